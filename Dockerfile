# The callfleet binary in a small runtime image; docker-compose.yml runs every callfleet service
# from it (and fills the models volume with `callfleet models pull`, which needs pip).
FROM rust:1.95-bookworm AS build
# What the build needs: cmake (libopus, whisper.cpp), libclang + pkg-config (whisper-rs bindgen),
# npm (LiveKit's JS SDK for the talk page, admin-api/build.rs).
RUN apt-get update && apt-get install -y --no-install-recommends \
        cmake clang libclang-dev pkg-config nodejs npm \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --bin callfleet && cp target/release/callfleet /usr/local/bin/callfleet

FROM debian:bookworm-slim
# espeak-ng (a voice, and Piper's phonemes), python3-pip (`callfleet models pull`), libgomp1
# (whisper.cpp's threads), curl (compose healthchecks).
RUN apt-get update && apt-get install -y --no-install-recommends \
        ca-certificates espeak-ng python3 python3-pip libgomp1 curl \
    && rm -rf /var/lib/apt/lists/*
COPY --from=build /usr/local/bin/callfleet /usr/local/bin/callfleet
COPY migrations /app/migrations
WORKDIR /app
# Models are a cache shared by the containers that use them (the compose `models` volume).
ENV CALLFLEET_DATA=/app/data CALLFLEET_MODELS=/models
EXPOSE 8080 8090 9100
CMD ["callfleet", "dev", "--http-addr", "0.0.0.0:8080"]
