//! Embeds livekit-client's prebuilt browser bundle (npm, pinned in ui/package-lock.json) for the
//! talk page. The package is installed with `npm ci` when missing; without npm the page still
//! loads and says what is missing.

use std::path::Path;
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-changed=ui/package-lock.json");
    println!("cargo:rerun-if-changed=build.rs");
    let ui = Path::new("ui");
    let bundle = ui.join("node_modules/livekit-client/dist/livekit-client.umd.js");
    if !bundle.exists() && std::env::var_os("CALLFLEET_SKIP_NPM").is_none() {
        let status = Command::new("npm")
            .args([
                "ci",
                "--no-audit",
                "--no-fund",
                "--ignore-scripts",
                "--loglevel=error",
            ])
            .current_dir(ui)
            .status();
        if !matches!(status, Ok(s) if s.success()) {
            println!("cargo:warning=npm ci in admin-api/ui failed ({status:?}); the talk page will say livekit-client is missing");
        }
    }
    let out = Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("livekit-client.umd.js");
    if bundle.exists() {
        std::fs::copy(&bundle, &out).expect("copy the livekit-client bundle");
    } else {
        std::fs::write(
            &out,
            "throw new Error('livekit-client was not bundled when callfleet was built: run npm ci in admin-api/ui and rebuild');\n",
        )
        .expect("write the placeholder bundle");
    }
}
