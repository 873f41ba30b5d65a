//! The images (images/) cannot be built here (no Docker engine), so everything they copy and
//! run is checked instead:
//!
//! * control: the Dockerfile's build step (images/control/build-static.sh) is run as the
//!   Dockerfile runs it; the file its final stage copies exists, is a static executable (no
//!   program interpreter: nothing needed from the `scratch` image), and runs the command line
//!   the injection template gives it, with an empty environment as in the image, against a test
//!   Felix; the build context keeps every workspace member.
//! * wasm: the Dockerfile copies dist/calico-alp.wasm (a wasm module, its checksum recorded) to
//!   /plugin.wasm; images/wasm/oci-layout.sh builds a reproducible OCI image of it whose layer
//!   holds exactly that module, with consistent digests (and `skopeo` reads it, when installed).

use alp_e2e::process::{wait_for, Proc};
use alp_e2e::stack::RunDir;
use alp_manifests::dockerfile::{self, copy_parts, stages};
use alp_manifests::felix::TestFelix;
use alp_manifests::inject::{self, PathMap, CONTAINER};
use alp_manifests::{bundled_wasm, root, sha256_file, sha256_hex};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

fn injected_control() -> Value {
    let overlay = inject::overlay(&root().join("envoy/istio/istio-operator.yaml")).unwrap();
    inject::container(&overlay, CONTAINER).unwrap().clone()
}

/// The ELF file at `path` is static: it has no PT_INTERP program header.
fn is_static_elf(path: &Path) -> bool {
    let b = std::fs::read(path).unwrap();
    assert!(
        b.len() > 64 && &b[..4] == b"\x7fELF",
        "{} is not an ELF file",
        path.display()
    );
    assert_eq!(b[4], 2, "64-bit ELF expected");
    let le = |o: usize, n: usize| -> u64 {
        b[o..o + n]
            .iter()
            .rev()
            .fold(0u64, |acc, x| (acc << 8) | u64::from(*x))
    };
    let phoff = le(0x20, 8) as usize;
    let phentsize = le(0x36, 2) as usize;
    let phnum = le(0x38, 2) as usize;
    (0..phnum).all(|i| le(phoff + i * phentsize, 4) != 3)
}

#[test]
fn control_image_builds_a_static_binary_that_runs_the_injected_command() {
    let file = root().join("images/control/Dockerfile");
    let ins = dockerfile::parse(&file).unwrap();
    let stages = stages(&ins);
    assert_eq!(stages.len(), 2, "a build stage and the final stage");
    let (build, last) = (&stages[0], &stages[1]);
    assert!(
        build[0].args.ends_with(" AS build") && build[0].args.starts_with("rust:"),
        "{:?}",
        build[0]
    );
    assert_eq!(
        last[0].args, "scratch",
        "the final image holds the static binary only"
    );

    // Build stage: the whole context (sources) at /src, then build-static.sh OUT.
    let workdir = build
        .iter()
        .find(|i| i.keyword == "WORKDIR")
        .map(|i| i.args.as_str());
    assert_eq!(workdir, Some("/src"));
    let copies: Vec<_> = build.iter().filter_map(copy_parts).collect();
    assert_eq!(
        copies,
        [(None, vec![".".to_string()], ".".to_string())],
        "COPY . . (the repository)"
    );
    let run = build.iter().find(|i| i.keyword == "RUN").expect("RUN");
    let words = run.words();
    assert_eq!(
        words.first().copied(),
        Some("images/control/build-static.sh"),
        "{run:?}"
    );
    let out_in_image = words.get(1).copied().expect("build-static.sh OUT");
    assert!(root().join(words[0]).is_file());

    // Final stage: copies OUT from the build stage, runs it non-root, as the template runs it.
    let copies: Vec<_> = last.iter().filter_map(copy_parts).collect();
    let [(Some(from), sources, dest)] = copies.as_slice() else {
        panic!("one COPY --from=build expected: {copies:?}")
    };
    assert_eq!(
        (from.as_str(), sources.as_slice()),
        ("build", [out_in_image.to_string()].as_slice())
    );
    let user = last
        .iter()
        .find(|i| i.keyword == "USER")
        .expect("USER")
        .args
        .clone();
    let uid: u32 = user
        .split(':')
        .next()
        .unwrap()
        .parse()
        .expect("a numeric USER");
    assert_ne!(uid, 0, "non-root by default");
    let entry = last
        .iter()
        .find(|i| i.keyword == "ENTRYPOINT")
        .and_then(|i| i.exec_form())
        .expect("ENTRYPOINT in exec form");
    assert_eq!(entry, std::slice::from_ref(dest));
    let control = injected_control();
    let command = inject::strings(&control["command"]);
    assert_eq!(
        command[0], *dest,
        "the template runs the binary the image installs"
    );
    for probe in ["livenessProbe", "readinessProbe"] {
        assert_eq!(
            inject::strings(&control[probe]["exec"]["command"])[0],
            *dest
        );
    }

    // Run the build step as the Dockerfile does (its own target dir: no lock shared with the
    // cargo running these tests; kept between runs).
    let target = alp_e2e::artifacts::target_dir().join("image-control");
    let out = target.join("out/control");
    let _ = std::fs::remove_file(&out);
    let built = Command::new("bash")
        .arg(root().join(words[0]))
        .arg(&out)
        .env("CARGO_TARGET_DIR", &target)
        .current_dir(root())
        .output()
        .expect("running images/control/build-static.sh");
    assert!(
        built.status.success(),
        "images/control/build-static.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    assert!(
        out.is_file(),
        "the COPY --from=build source {out_in_image} was not produced"
    );
    assert!(
        is_static_elf(&out),
        "{} needs a program interpreter: not static",
        out.display()
    );

    // The injected command line, with an empty environment (scratch: nothing but PATH).
    let dir = RunDir::create("alp-image-control").unwrap();
    let felix = dir.path.join("var/run/felix");
    let sockets = dir.path.join("var/run/calico-alp");
    std::fs::create_dir_all(&sockets).unwrap();
    let summary = std::fs::read_to_string(alp_e2e::artifacts::yaobank_updates("summary")).unwrap();
    let _felix = TestFelix::start(&felix.join("nodeagent/socket"), &summary).unwrap();
    let paths = PathMap(vec![
        ("/var/run/felix".into(), felix.clone()),
        ("/var/run/calico-alp".into(), sockets.clone()),
    ]);
    let mut cmd = paths.command(&command, &out).unwrap();
    cmd.env_clear().env("PATH", "/usr/local/bin");
    let mut proc = Proc::spawn("control", cmd, &dir.path.join("control.log")).unwrap();
    let readiness = inject::strings(&control["readinessProbe"]["exec"]["command"]);
    let ready = wait_for(Duration::from_secs(20), Duration::from_millis(100), || {
        let mut p = paths.command(&readiness, &out).unwrap();
        p.env_clear();
        p.output().ok().filter(|o| o.status.success()).map(|_| ())
    });
    assert!(
        ready.is_some(),
        "the static control never became ready:\n{}",
        proc.log_tail(20)
    );
    proc.stop(Duration::from_secs(5));
}

#[test]
fn the_control_build_context_keeps_what_cargo_needs() {
    let ignore =
        std::fs::read_to_string(root().join("images/control/Dockerfile.dockerignore")).unwrap();
    let patterns: Vec<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    let ignored = |path: &str| {
        patterns.iter().any(|p| {
            let p = p.trim_start_matches("**/");
            path == p || path.starts_with(&format!("{p}/"))
        })
    };
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).unwrap();
    let members: Vec<String> = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("members"))
        .expect("workspace members")
        .split('"')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    assert!(members.len() >= 5, "{members:?}");
    let mut needed = vec![
        "Cargo.toml".to_string(),
        "Cargo.lock".into(),
        "images/control/build-static.sh".into(),
    ];
    needed.extend(members.iter().map(|m| format!("{m}/Cargo.toml")));
    for path in needed {
        assert!(root().join(&path).is_file(), "{path} missing");
        assert!(
            !ignored(&path),
            "{path} is excluded from the control image's build context"
        );
    }
    for heavy in ["target", "dist", ".git"] {
        assert!(
            ignored(heavy),
            "{heavy} should stay out of the build context"
        );
    }
}

#[test]
fn wasm_image_copies_the_bundled_module() {
    let ins = dockerfile::parse(&root().join("images/wasm/Dockerfile")).unwrap();
    let keywords: Vec<&str> = ins.iter().map(|i| i.keyword.as_str()).collect();
    assert_eq!(
        keywords,
        ["FROM", "COPY"],
        "FROM scratch and one COPY, nothing else"
    );
    assert_eq!(ins[0].args, "scratch");
    let (from, sources, dest) = copy_parts(&ins[1]).unwrap();
    assert_eq!(
        (from, dest.as_str()),
        (None, "/plugin.wasm"),
        "Istio reads /plugin.wasm"
    );
    // The build context is dist/ (the Dockerfile's usage line says so).
    let text = std::fs::read_to_string(root().join("images/wasm/Dockerfile")).unwrap();
    assert!(
        text.contains("-f images/wasm/Dockerfile") && text.contains(" dist\n"),
        "usage names dist/ as the context"
    );
    let (wasm, _) = bundled_wasm().unwrap();
    assert_eq!(sources, ["calico-alp.wasm"]);
    assert_eq!(root().join("dist").join(&sources[0]), wasm);
    let head = std::fs::read(&wasm).unwrap();
    assert_eq!(&head[..4], b"\0asm", "a wasm module");
}

fn json_file(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

fn blob(layout: &Path, digest: &str) -> PathBuf {
    let hex = digest.strip_prefix("sha256:").expect("sha256 digest");
    let p = layout.join("blobs/sha256").join(hex);
    assert_eq!(sha256_file(&p).unwrap(), hex, "blob {digest} content");
    p
}

#[test]
fn oci_layout_holds_the_bundled_module_with_consistent_digests() {
    let (wasm, _) = bundled_wasm().unwrap();
    let dir = RunDir::create("alp-oci").unwrap();
    let run = |out: &Path| {
        let status = Command::new("bash")
            .arg(root().join("images/wasm/oci-layout.sh"))
            .arg("v-test")
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "oci-layout.sh failed");
        std::fs::read_to_string(out.join("calico-alp.digest"))
            .unwrap()
            .trim()
            .to_string()
    };
    let digest = run(&dir.path.join("a"));
    assert_eq!(
        run(&dir.path.join("b")),
        digest,
        "reproducible: same module, same digest"
    );
    let layout = dir.path.join("a/calico-alp");
    assert_eq!(
        json_file(&layout.join("oci-layout"))["imageLayoutVersion"],
        "1.0.0"
    );
    let index = json_file(&layout.join("index.json"));
    let m = &index["manifests"][0];
    assert_eq!(m["digest"], digest.as_str());
    assert_eq!(
        m["annotations"]["org.opencontainers.image.ref.name"],
        "v-test"
    );
    let manifest_path = blob(&layout, &digest);
    assert_eq!(
        m["size"].as_u64(),
        Some(std::fs::metadata(&manifest_path).unwrap().len())
    );
    let manifest = json_file(&manifest_path);
    assert_eq!(
        manifest["mediaType"],
        "application/vnd.oci.image.manifest.v1+json"
    );
    let layers = manifest["layers"].as_array().unwrap();
    assert_eq!(layers.len(), 1);
    assert_eq!(
        layers[0]["mediaType"], "application/vnd.oci.image.layer.v1.tar+gzip",
        "Istio's compat variant"
    );
    let layer = blob(&layout, layers[0]["digest"].as_str().unwrap());
    let config = json_file(&blob(
        &layout,
        manifest["config"]["digest"].as_str().unwrap(),
    ));

    // The layer: a tar holding exactly plugin.wasm, identical to the bundled module.
    let tar = Command::new("gzip")
        .arg("-dc")
        .arg(&layer)
        .output()
        .unwrap();
    assert!(tar.status.success());
    assert_eq!(
        config["rootfs"]["diff_ids"][0],
        format!("sha256:{}", sha256_hex(&tar.stdout))
    );
    let listing = Command::new("tar")
        .arg("-tzf")
        .arg(&layer)
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&listing.stdout).trim(),
        "plugin.wasm"
    );
    let x = dir.path.join("x");
    std::fs::create_dir_all(&x).unwrap();
    assert!(Command::new("tar")
        .arg("-xzf")
        .arg(&layer)
        .arg("-C")
        .arg(&x)
        .status()
        .unwrap()
        .success());
    assert_eq!(
        std::fs::read(x.join("plugin.wasm")).unwrap(),
        std::fs::read(&wasm).unwrap()
    );

    // A real OCI tool agrees, when this machine has one.
    if alp_e2e::artifacts::find_on_path("skopeo").is_some() {
        let out = Command::new("skopeo")
            .args(["inspect", "--raw"])
            .arg(format!("oci:{}:v-test", layout.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(format!("sha256:{}", sha256_hex(&out.stdout)), digest);
    } else {
        eprintln!("note: skopeo is not installed; the OCI layout was checked structurally only");
    }
}
