# The callfleet binary in a small runtime image.
FROM rust:1.95-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake clang && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin callfleet

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates espeak-ng && rm -rf /var/lib/apt/lists/*
COPY --from=build /src/target/release/callfleet /usr/local/bin/callfleet
COPY migrations /app/migrations
WORKDIR /app
ENV CALLFLEET_DATA=/app/data
EXPOSE 8080
CMD ["callfleet", "dev", "--http-addr", "0.0.0.0:8080"]
