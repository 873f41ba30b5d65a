//! The wasm image `images/wasm/oci-layout.sh` builds, read the way istio-agent reads an image it
//! pulls for a WasmPlugin `url: oci://...` (istio/istio `pkg/wasm/imagefetcher.go`, with the
//! digest check of `pkg/wasm/cache.go`):
//!
//! 1. The reference resolves to one descriptor; an image *index* would be resolved to its
//!    `linux/amd64` image (go-containerregistry's default platform), so the layout must tag an
//!    image manifest itself, or the digest a user pins would not be the one Istio computes.
//! 2. The digest Istio compares with the WasmPlugin's `sha256` (or the URL's `@sha256:`) is the
//!    sha256 of the image manifest's bytes: the digest the script prints and writes.
//! 3. A manifest whose `mediaType` is Docker's schema 2 takes the Docker path; otherwise Istio
//!    tries the *compat* variant (exactly one layer, `application/vnd.oci.image.layer.v1.tar+gzip`,
//!    gunzipped and walked as a tar for an entry whose base name is `plugin.wasm`; older Istio
//!    requires exactly one layer, newer takes the last), then the *oci* variant (exactly two
//!    layers, one of them `application/vnd.module.wasm.content.layer.v1+wasm`, read raw).
//! 4. What it found must start with the wasm magic and be at least 8 bytes.
//!
//! The module packed here is built by the test (a valid module with a custom section), so the
//! test does not depend on `./wasm-bundle.sh`; `tests/manifests` checks the bundled module's
//! image. Needs bash, GNU tar, gzip, sha256sum (as the script does).

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const WASM_LAYER: &str = "application/vnd.module.wasm.content.layer.v1+wasm";
const WASM_CONFIG: &str = "application/vnd.module.wasm.config.v1+json";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn script() -> PathBuf {
    root().join("images/wasm/oci-layout.sh")
}

/// Runs `program` with `input` on standard input; its standard output.
fn pipe(program: &str, args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let mut stdin = child.stdin.take().expect("stdin");
    let data = input.to_vec();
    // Write from another thread: the program may fill its output pipe before reading it all.
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("wait");
    writer.join().expect("writer").expect("write stdin");
    assert!(
        out.status.success(),
        "{program}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

fn sha256_hex(bytes: &[u8]) -> String {
    let out = String::from_utf8(pipe("sha256sum", &["-"], bytes)).expect("utf-8");
    out.split_whitespace().next().expect("digest").to_string()
}

fn gunzip(bytes: &[u8]) -> Vec<u8> {
    pipe("gzip", &["-dc"], bytes)
}

/// A valid wasm module: the header and one custom section named `name` holding `len` bytes.
fn module(name: &str, len: usize) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let mut payload = Vec::new();
    leb128(name.len(), &mut payload);
    payload.extend_from_slice(name.as_bytes());
    payload.extend((0..len).map(|i| (i * 7 % 251) as u8));
    let mut m = b"\0asm\x01\0\0\0".to_vec();
    m.push(0); // custom section
    leb128(payload.len(), &mut m);
    m.extend(payload);
    m
}

/// One tar entry, as Go's archive/tar reports it.
#[derive(Debug)]
struct Entry {
    name: String,
    typeflag: u8,
    mode: u64,
    uid: u64,
    gid: u64,
    mtime: u64,
    data: Vec<u8>,
}

fn octal(field: &[u8]) -> Result<u64, String> {
    let text: String = field
        .iter()
        .take_while(|b| **b != 0)
        .map(|b| *b as char)
        .collect();
    let text = text.trim();
    if text.is_empty() {
        return Ok(0);
    }
    u64::from_str_radix(text, 8).map_err(|e| format!("bad octal field {text:?}: {e}"))
}

/// The entries of a ustar/GNU tar archive (header checksums verified, as Go's reader does).
fn tar_entries(tar: &[u8]) -> Result<Vec<Entry>, String> {
    let mut entries = Vec::new();
    let mut at = 0;
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|b| *b == 0) {
            return Ok(entries);
        }
        let sum: u64 = h
            .iter()
            .enumerate()
            .map(|(i, b)| {
                if (148..156).contains(&i) {
                    u64::from(b' ')
                } else {
                    u64::from(*b)
                }
            })
            .sum();
        if octal(&h[148..156])? != sum {
            return Err(format!("tar header at {at}: bad checksum"));
        }
        let text = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&h[r])
                .trim_end_matches('\0')
                .to_string()
        };
        let (name, prefix) = (text(0..100), text(345..500));
        let size = usize::try_from(octal(&h[124..136])?).map_err(|e| e.to_string())?;
        let data_at = at + 512;
        let data = tar
            .get(data_at..data_at + size)
            .ok_or(format!("tar entry {name} is cut short"))?
            .to_vec();
        entries.push(Entry {
            name: if prefix.is_empty() {
                name
            } else {
                format!("{prefix}/{name}")
            },
            typeflag: h[156],
            mode: octal(&h[100..108])?,
            uid: octal(&h[108..116])?,
            gid: octal(&h[116..124])?,
            mtime: octal(&h[136..148])?,
            data,
        });
        at = data_at + size.div_ceil(512) * 512;
    }
    Err("tar archive without its end".to_string())
}

fn json(bytes: &[u8]) -> Value {
    serde_json::from_slice(bytes).expect("JSON")
}

/// A blob of the layout by digest, checked against its descriptor (content addressing, as a
/// registry checks a push).
fn blob(layout: &Path, descriptor: &Value) -> Result<Vec<u8>, String> {
    let digest = descriptor["digest"]
        .as_str()
        .ok_or("descriptor without digest")?;
    let hex = digest
        .strip_prefix("sha256:")
        .ok_or(format!("{digest}: not sha256"))?;
    let bytes = std::fs::read(layout.join("blobs/sha256").join(hex))
        .map_err(|e| format!("blob {digest}: {e}"))?;
    if sha256_hex(&bytes) != hex {
        return Err(format!("blob {digest}: content has another digest"));
    }
    if descriptor["size"].as_u64() != Some(bytes.len() as u64) {
        return Err(format!("blob {digest}: size differs from its descriptor"));
    }
    Ok(bytes)
}

/// What istio-agent gets from pulling `layout:tag`: the digest it compares with the
/// WasmPlugin's `sha256`, and the module. Errors as Istio would report them.
struct Pulled {
    digest: String,
    module: Vec<u8>,
    manifest: Value,
}

fn pull_like_istio(layout: &Path, tag: &str) -> Result<Pulled, String> {
    let oci_layout = json(&std::fs::read(layout.join("oci-layout")).map_err(|e| e.to_string())?);
    if oci_layout["imageLayoutVersion"] != "1.0.0" {
        return Err(format!("not an OCI image layout: {oci_layout}"));
    }
    let index = json(&std::fs::read(layout.join("index.json")).map_err(|e| e.to_string())?);
    let tagged: Vec<&Value> = index["manifests"]
        .as_array()
        .ok_or("index.json without manifests")?
        .iter()
        .filter(|m| m["annotations"]["org.opencontainers.image.ref.name"] == tag)
        .collect();
    let [descriptor] = tagged.as_slice() else {
        return Err(format!("{} descriptors tagged {tag}", tagged.len()));
    };
    if descriptor["mediaType"] != OCI_MANIFEST && descriptor["mediaType"] != DOCKER_MANIFEST {
        return Err(format!(
            "{tag} is a {}, not an image manifest: Istio would resolve it to its linux/amd64 \
             image and compare that image's digest",
            descriptor["mediaType"]
        ));
    }
    let raw = blob(layout, descriptor)?;
    // img.Digest(): the sha256 of the manifest as stored and served.
    let digest = sha256_hex(&raw);
    let manifest = json(&raw);
    let layers = manifest["layers"].as_array().cloned().unwrap_or_default();
    let wasm = if manifest["mediaType"] == DOCKER_MANIFEST {
        return Err("a Docker schema 2 manifest: not what the script writes".to_string());
    } else {
        let compat = || -> Result<Vec<u8>, String> {
            if layers.len() != 1 {
                return Err(format!(
                    "number of layers must be 1 but got {}",
                    layers.len()
                ));
            }
            let layer = &layers[0];
            if layer["mediaType"] != OCI_LAYER {
                return Err(format!(
                    "invalid media type {} (expect {OCI_LAYER})",
                    layer["mediaType"]
                ));
            }
            let tar = gunzip(&blob(layout, layer)?);
            tar_entries(&tar)?
                .into_iter()
                .find(|e| Path::new(&e.name).file_name() == Some("plugin.wasm".as_ref()))
                .map(|e| e.data)
                .ok_or("plugin.wasm not found in the archive".to_string())
        };
        let oci = || -> Result<Vec<u8>, String> {
            if layers.len() != 2 {
                return Err(format!(
                    "number of layers must be 2 but got {}",
                    layers.len()
                ));
            }
            let layer = layers
                .iter()
                .find(|l| l["mediaType"] == WASM_LAYER)
                .ok_or(format!("could not find the layer of type {WASM_LAYER}"))?;
            blob(layout, layer)
        };
        match (compat(), oci()) {
            (Ok(w), _) | (_, Ok(w)) => w,
            (Err(c), Err(o)) => {
                return Err(format!(
                    "could not parse as compat variant: {c}; could not parse as oci variant: {o}"
                ))
            }
        }
    };
    if wasm.len() < 8 || &wasm[..4] != b"\0asm" {
        return Err("fetched Wasm binary is invalid".to_string());
    }
    Ok(Pulled {
        digest,
        module: wasm,
        manifest,
    })
}

/// Runs the script; its output.
fn oci_layout(args: &[&str]) -> Output {
    Command::new("bash")
        .arg(script())
        .args(args)
        .output()
        .expect("bash runs images/wasm/oci-layout.sh")
}

/// Builds the image of `wasm` into `dir` with `extra` options; the digest the script printed
/// (`digest: sha256:<hex>`), checked against the one it wrote.
fn build(wasm: &Path, dir: &Path, tag: &str, extra: &[&str]) -> String {
    let mut args = extra.to_vec();
    let (wasm, dir) = (wasm.display().to_string(), dir.display().to_string());
    args.extend(["--wasm", &wasm, tag, &dir]);
    let out = oci_layout(&args);
    assert!(
        out.status.success(),
        "oci-layout.sh {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let printed = stdout
        .lines()
        .find_map(|l| l.strip_prefix("digest: sha256:"))
        .unwrap_or_else(|| panic!("no `digest: sha256:` line in:\n{stdout}"))
        .to_string();
    let written = std::fs::read_to_string(Path::new(&dir).join("calico-alp.digest"))
        .expect("calico-alp.digest");
    assert_eq!(written.trim(), format!("sha256:{printed}"));
    // The WasmPlugin lines it prints pin that digest.
    assert!(
        stdout.contains(&format!("@sha256:{printed}"))
            && stdout.contains(&format!("sha256: {printed}")),
        "{stdout}"
    );
    printed
}

fn write_module(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write module");
    path
}

#[test]
fn compat_image_is_what_istio_reads_and_the_printed_digest_is_the_one_it_checks() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = module("alp-test", 5000);
    let wasm = write_module(dir.path(), "m.wasm", &bytes);
    let out = dir.path().join("oci");
    let printed = build(&wasm, &out, "v-test", &[]);
    let layout = out.join("calico-alp");

    let pulled = pull_like_istio(&layout, "v-test").expect("Istio reads the image");
    assert_eq!(pulled.module, bytes, "the module comes out unchanged");
    assert_eq!(
        pulled.digest, printed,
        "the digest to pin is the manifest's"
    );
    assert_ne!(
        printed,
        sha256_hex(&bytes),
        "the module's checksum is not the image's"
    );

    // The compat variant exactly: one tar+gzip layer, the annotation, an image config.
    let m = &pulled.manifest;
    assert_eq!(m["mediaType"], OCI_MANIFEST);
    assert_eq!(m["schemaVersion"], 2);
    assert_eq!(m["annotations"]["module.wasm.image/variant"], "compat");
    let layers = m["layers"].as_array().expect("layers");
    assert_eq!(layers.len(), 1, "exactly one layer");
    assert_eq!(layers[0]["mediaType"], OCI_LAYER);
    assert_eq!(
        m["config"]["mediaType"],
        "application/vnd.oci.image.config.v1+json"
    );
    let tar = gunzip(&blob(&layout, &layers[0]).expect("layer"));
    let entries = tar_entries(&tar).expect("a tar");
    assert_eq!(entries.len(), 1, "only plugin.wasm: {entries:?}");
    let e = &entries[0];
    assert_eq!(
        (
            e.name.as_str(),
            e.typeflag,
            e.mode & 0o7777,
            e.uid,
            e.gid,
            e.mtime
        ),
        ("plugin.wasm", b'0', 0o644, 0, 0, 0),
        "a plain file at the root, fixed owner and time"
    );
    let config = json(&blob(&layout, &m["config"]).expect("config"));
    assert_eq!(
        config["rootfs"]["diff_ids"],
        serde_json::json!([format!("sha256:{}", sha256_hex(&tar))])
    );
    assert_eq!(
        (config["os"].as_str(), config["architecture"].as_str()),
        (Some("linux"), Some("amd64"))
    );
    // Every blob in the layout is one the manifest names (nothing stale from an earlier run).
    let mut blobs: Vec<String> = std::fs::read_dir(layout.join("blobs/sha256"))
        .expect("blobs")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    blobs.sort();
    let hex = |d: &Value| {
        d["digest"]
            .as_str()
            .and_then(|d| d.strip_prefix("sha256:"))
            .expect("sha256 digest")
            .to_string()
    };
    let mut named = vec![printed.clone(), hex(&m["config"]), hex(&layers[0])];
    named.sort();
    assert_eq!(blobs, named);
}

#[test]
fn oci_variant_has_the_two_layers_istio_expects() {
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = module("alp-oci", 3000);
    let wasm = write_module(dir.path(), "m.wasm", &bytes);
    let out = dir.path().join("oci");
    let printed = build(&wasm, &out, "v2", &["--variant", "oci"]);
    let layout = out.join("calico-alp");
    let pulled = pull_like_istio(&layout, "v2").expect("Istio reads the image");
    assert_eq!(pulled.module, bytes);
    assert_eq!(pulled.digest, printed);
    let m = &pulled.manifest;
    let types: Vec<&str> = m["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["mediaType"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(types, [WASM_CONFIG, WASM_LAYER]);
    let runtime = json(&blob(&layout, &m["layers"][0]).expect("runtime config"));
    assert_eq!(runtime["type"], "envoy_proxy");
    assert_eq!(m["config"]["mediaType"], WASM_CONFIG);
    // Not also a compat image: Istio takes it as the oci variant.
    assert!(m["annotations"]["module.wasm.image/variant"].is_null());
}

#[test]
fn same_module_same_digest_another_module_another_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let a = write_module(dir.path(), "a.wasm", &module("a", 2000));
    let b = write_module(dir.path(), "b.wasm", &module("b", 2000));
    let first = build(&a, &dir.path().join("1"), "t", &[]);
    // Another directory, another time: the same bytes.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(build(&a, &dir.path().join("2"), "t", &[]), first);
    assert_ne!(build(&b, &dir.path().join("3"), "t", &[]), first);
    // The tag is not in the manifest: retagging does not change what is pinned.
    assert_eq!(build(&a, &dir.path().join("4"), "other", &[]), first);
    // The variants are different images.
    assert_ne!(
        build(&a, &dir.path().join("5"), "t", &["--variant", "oci"]),
        first
    );
    // Rebuilding into the same directory replaces the layout.
    assert_ne!(build(&b, &dir.path().join("1"), "t", &[]), first);
    let layout = dir.path().join("1/calico-alp");
    assert_eq!(
        pull_like_istio(&layout, "t").expect("pull").module,
        module("b", 2000)
    );
}

/// The recipe this project used to document (one `oras push` layer, the runtime config as the
/// manifest's config) is an image Istio refuses; the reader above says so as Istio does.
#[test]
fn a_single_artifact_layer_is_refused_as_istio_refuses_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wasm = write_module(dir.path(), "m.wasm", &module("m", 100));
    let out = dir.path().join("oci");
    build(&wasm, &out, "t", &["--variant", "oci"]);
    let layout = out.join("calico-alp");
    let index_path = layout.join("index.json");
    let index = json(&std::fs::read(&index_path).expect("index"));
    let digest = index["manifests"][0]["digest"].as_str().expect("digest");
    let mut manifest = json(&blob(&layout, &index["manifests"][0]).expect("manifest"));
    let wasm_layer = manifest["layers"][1].clone();
    manifest["layers"] = Value::Array(vec![wasm_layer]);
    let raw = serde_json::to_vec(&manifest).expect("json");
    let hex = sha256_hex(&raw);
    std::fs::write(layout.join("blobs/sha256").join(&hex), &raw).expect("write");
    let text = std::fs::read_to_string(&index_path)
        .expect("index")
        .replace(&digest[7..], &hex)
        .replace(
            &format!("\"size\":{}", index["manifests"][0]["size"]),
            &format!("\"size\":{}", raw.len()),
        );
    std::fs::write(&index_path, text).expect("write index");
    let err = pull_like_istio(&layout, "t").err().expect("refused");
    assert!(
        err.contains(&format!("invalid media type \"{WASM_LAYER}\""))
            && err.contains("number of layers must be 2 but got 1"),
        "{err}"
    );
}

#[test]
fn refuses_what_istio_would_refuse_and_bad_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("oci").display().to_string();
    let text = write_module(dir.path(), "not.wasm", b"hello, not a module");
    let short = write_module(dir.path(), "short.wasm", b"\0asm");
    let good = write_module(dir.path(), "good.wasm", &module("g", 10));
    let missing = dir.path().join("missing.wasm");
    let cases: Vec<(Vec<String>, i32, String)> = vec![
        (
            vec![
                "--wasm".into(),
                text.display().to_string(),
                "t".into(),
                out.clone(),
            ],
            1,
            format!("{} is not a wasm module", text.display()),
        ),
        (
            vec![
                "--wasm".into(),
                short.display().to_string(),
                "t".into(),
                out.clone(),
            ],
            1,
            "is not a wasm module".into(),
        ),
        (
            vec![
                "--wasm".into(),
                missing.display().to_string(),
                "t".into(),
                out.clone(),
            ],
            1,
            format!("{} does not exist", missing.display()),
        ),
        (
            vec![
                "--variant".into(),
                "docker".into(),
                "--wasm".into(),
                good.display().to_string(),
            ],
            2,
            "--variant must be compat or oci".into(),
        ),
        (
            vec![
                "--wasm".into(),
                good.display().to_string(),
                "no/slash".into(),
                out.clone(),
            ],
            2,
            "bad tag no/slash".into(),
        ),
        (vec!["--bogus".into()], 2, "unknown option --bogus".into()),
        (vec!["a".into(), "b".into(), "c".into()], 2, "usage".into()),
    ];
    for (args, code, message) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = oci_layout(&args);
        let err = String::from_utf8_lossy(&o.stderr);
        assert_eq!(o.status.code(), Some(code), "{args:?}: {err}");
        assert!(err.contains(&message), "{args:?}: {err}");
    }
    assert!(!Path::new(&out).join("calico-alp.digest").exists());
}
