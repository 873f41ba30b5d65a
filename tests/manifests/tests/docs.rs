//! The how-to pages stay true: they are linked from the README, every repository file they name
//! exists, everything they apply to a cluster is one of the checked manifests, and the YAO bank
//! decisions they promise are the ones `control check` makes on the tutorial's policy.

use alp_manifests::rendered::{INSTALL_DIR, NATIVE_SET, SETS};
use alp_manifests::yaml::markdown_blocks;
use alp_manifests::{rel, render_istio_with, root};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

const PAGES: [&str; 2] = ["docs/istio.md", "docs/yaobank.md"];

fn read(p: &str) -> String {
    std::fs::read_to_string(root().join(p)).unwrap_or_else(|e| panic!("{p}: {e}"))
}

#[test]
fn the_readme_links_the_how_to_pages() {
    let readme = read("README.md");
    for p in PAGES {
        assert!(
            readme.contains(&format!("]({p})")),
            "README.md does not link {p}"
        );
    }
    assert!(read("docs/istio.md").contains("](yaobank.md)"));
    assert!(read("docs/yaobank.md").contains("](istio.md)"));
}

/// Repository paths in `text`: words starting with one of the project's top-level directories.
fn repo_paths(text: &str) -> Vec<String> {
    const TOP: [&str; 8] = [
        "envoy/", "images/", "docs/", "tests/", "filter/", "control/", "scripts/", "dist/",
    ];
    let mut out = vec![];
    for raw in text.split(|c: char| c.is_whitespace() || "`'\"()[]<>,|=".contains(c)) {
        let w = raw.trim_end_matches(['.', ':', ';']);
        let w = w.strip_prefix("./").unwrap_or(w);
        if TOP.iter().any(|t| w.starts_with(t)) && w.len() > 5 {
            out.push(w.to_string());
        }
    }
    out
}

/// What envoy/istio/render.sh writes, rendered into `dir` for these checks (an oci:// module:
/// no dist/calico-alp.wasm needed; with the optional native set, which the page documents too).
fn render(dir: &Path) -> PathBuf {
    let out = dir.join("istio");
    let digest = format!("sha256:{}", "ab".repeat(32));
    render_istio_with(
        &out,
        &[
            "--wasm-url",
            "oci://registry.example.com/calico-alp/filter:v1",
            "--oci-digest",
            &digest,
            "--control-image",
            "registry.example.com/calico-alp/control:v1",
            "--native-image",
            "registry.example.com/calico-alp/proxyv2-native:v1",
        ],
    )
    .unwrap();
    out
}

/// Where a path named in the docs comes from: dist/istio/X is what render.sh writes (X in its
/// output `rendered`), other dist/ files are written by the named scripts.
fn source_of(path: &str, rendered: &Path) -> Option<PathBuf> {
    let root = root();
    if let Some(f) = path.strip_prefix("dist/istio") {
        if f.is_empty() || f.starts_with('/') {
            return Some(rendered.join(f.trim_start_matches('/')));
        }
    }
    match path {
        "dist/calico-alp.wasm" | "dist/calico-alp.wasm.sha256" => Some(root.join("wasm-bundle.sh")),
        "dist/libcalico_alp.so" | "dist/libcalico_alp.so.sha256" => {
            Some(root.join("native-bundle.sh"))
        }
        p if p.starts_with("dist/oci/") => Some(root.join("images/wasm/oci-layout.sh")),
        p if p.starts_with("dist/") => None,
        p => Some(root.join(p)),
    }
}

#[test]
fn the_pages_name_only_files_that_exist() {
    let dir = alp_e2e::stack::RunDir::create("alp-docs-paths").unwrap();
    let rendered = render(&dir.path);
    let mut pages: Vec<PathBuf> = PAGES.iter().map(|p| root().join(p)).collect();
    pages.push(root().join("envoy/istio/README.md"));
    pages.push(root().join("images/README.md"));
    let mut missing = vec![];
    for page in &pages {
        let text =
            std::fs::read_to_string(page).unwrap_or_else(|e| panic!("{}: {e}", page.display()));
        for p in repo_paths(&text) {
            // A page in a subdirectory may name its neighbours relative to itself.
            let beside = page.parent().map(|d| d.join(&p));
            if beside.as_ref().is_some_and(|b| b.exists())
                && page.parent() != Some(root().join("docs").as_path())
            {
                continue;
            }
            match source_of(&p, &rendered) {
                Some(src) if src.exists() => {}
                Some(src) => {
                    missing.push(format!("{}: {p} ({} does not exist)", rel(page), rel(&src)))
                }
                None => missing.push(format!(
                    "{}: {p} is not a file any script writes",
                    rel(page)
                )),
            }
        }
    }
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

/// How a command of the pages uses what it names with `-f`, `-k` or `--patch-file`: Ok(true)
/// for a checked manifest (or set) given to kubectl, istioctl or Helm, Ok(false) for a
/// Dockerfile, Err for anything else.
fn checked_use(flag: &str, target: &str, command: &str, rendered: &Path) -> Result<bool, String> {
    // `docker build -f images/...`: a Dockerfile, checked by the images tests.
    if flag == "-f" && target.starts_with("images/") && target.ends_with("/Dockerfile") {
        return Ok(false);
    }
    let kubectl = ["kubectl apply", "kubectl delete", "kubectl create"]
        .iter()
        .any(|c| command.contains(c));
    if let Some(rest) = target.strip_prefix("dist/istio/") {
        let path = rendered.join(rest);
        if !path.exists() {
            return Err(format!("render.sh writes no {target}"));
        }
        let mut parts = rest.trim_end_matches('/').splitn(2, '/');
        let (top, file) = (parts.next().unwrap_or(""), parts.next());
        return if top == INSTALL_DIR {
            // Install inputs go to istioctl, Helm and kubectl patch, never to kubectl apply.
            let installer = command.contains("istioctl install")
                || command.contains("helm install")
                || command.contains("helm upgrade")
                || command.contains("kubectl patch");
            if kubectl || !installer || file.is_none() {
                Err(format!(
                    "{target} is an install input, for istioctl, Helm or kubectl patch only"
                ))
            } else {
                Ok(true)
            }
        } else if (SETS.contains(&top) || top == NATIVE_SET) && kubectl {
            match (file, flag) {
                // A set as a whole: kubectl apply -k DIR, or -f DIR.
                (None, "-k" | "-f") => Ok(true),
                // One of its files (to delete a variant's filter but not what both share).
                (Some(f), "-f") if f.ends_with(".yaml") && path.is_file() => Ok(true),
                _ => Err(format!(
                    "{flag} {target}: not a set or one of its manifests"
                )),
            }
        } else {
            Err(format!("{target} used by {command:?}"))
        };
    }
    let committed = (target.starts_with("envoy/istio/") || target.starts_with("envoy/kubernetes/"))
        && target.ends_with(".yaml")
        && root().join(target).is_file();
    if committed && flag != "-k" {
        Ok(true)
    } else {
        Err(format!("{flag} {target} is not a checked manifest"))
    }
}

#[test]
fn everything_the_pages_apply_is_a_checked_manifest() {
    let dir = alp_e2e::stack::RunDir::create("alp-docs-apply").unwrap();
    let rendered = render(&dir.path);
    let mut applied = 0;
    let mut problems = vec![];
    let mut commands = vec![];
    for page in PAGES {
        for b in markdown_blocks(&root().join(page)).unwrap() {
            if b.lang != "sh" {
                continue;
            }
            let text = b.text.replace("\\\n", " ");
            for line in text.lines() {
                commands.push(line.to_string());
                let words: Vec<&str> = line.split_whitespace().collect();
                for (i, w) in words.iter().enumerate() {
                    if !matches!(*w, "-f" | "-k" | "--patch-file") {
                        continue;
                    }
                    let target = words.get(i + 1).copied().unwrap_or("");
                    match checked_use(w, target, &words[..i].join(" "), &rendered) {
                        Ok(counted) => applied += usize::from(counted),
                        Err(e) => problems.push(format!("{page}:{}: {e}", b.line)),
                    }
                }
                // The WasmPlugin and its EnvoyFilter alternative are never applied together.
                let wasmplugin =
                    line.contains("wasmplugin.yaml") || line.contains("dist/istio/wasmplugin");
                let envoyfilter = line.contains("envoyfilter-wasm.yaml")
                    || line.contains("dist/istio/envoyfilter");
                let native =
                    line.contains("envoyfilter-native.yaml") || line.contains("dist/istio/native");
                if line.contains("apply") && native && (wasmplugin || envoyfilter) {
                    problems.push(format!(
                        "{page}:{}: applies the native module with a wasm way",
                        b.line
                    ));
                }
                if line.contains("apply") && wasmplugin && envoyfilter {
                    problems.push(format!(
                        "{page}:{}: applies both the WasmPlugin and the EnvoyFilter alternative",
                        b.line
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    assert!(
        applied >= 10,
        "only {applied} manifests applied in the pages"
    );
    // Each set is applied whole, and the install inputs are installed, as render.sh prints.
    for want in [
        "kubectl apply -k dist/istio/wasmplugin",
        "kubectl apply -k dist/istio/envoyfilter",
        "istioctl install -y -f dist/istio/install/istio-operator.yaml",
        "-f dist/istio/install/istiod-values.yaml",
        "--patch-file dist/istio/install/felix-policy-sync.yaml",
        // The optional native module: its set, its install overlays, its image, the way back.
        "kubectl apply -k dist/istio/native",
        "-f dist/istio/install/istio-operator.yaml -f dist/istio/install/native-operator.yaml",
        "-f dist/istio/install/istiod-values.yaml -f dist/istio/install/native-values.yaml",
        "--native-image",
        "-f images/native/Dockerfile",
        "kubectl delete -f dist/istio/native/envoyfilter-native.yaml",
    ] {
        assert!(
            commands.iter().any(|c| c.contains(want)),
            "docs/istio.md does not run {want:?}"
        );
    }
}

/// The tutorial's workloads as Calico WorkloadEndpoints (the inventory Felix would have).
fn inventory(dir: &Path) -> PathBuf {
    let mut text = String::new();
    for (name, ip, port) in [
        ("customer", "10.0.0.1", 80),
        ("summary", "10.0.0.2", 80),
        ("database", "10.0.0.3", 2379),
    ] {
        text.push_str(&format!(
            "---\napiVersion: projectcalico.org/v3\nkind: WorkloadEndpoint\nmetadata:\n  name: node1-k8s-{name}-eth0\n  namespace: yaobank\n  labels: {{app: {name}, version: v1}}\nspec:\n  orchestrator: k8s\n  node: node1\n  pod: {name}\n  endpoint: eth0\n  serviceAccountName: {name}\n  interfaceName: cali-{name}\n  ipNetworks: [\"{ip}/32\"]\n  ports: [{{name: http, protocol: TCP, port: {port}}}]\n"
        ));
    }
    let f = dir.join("workloads.yaml");
    std::fs::write(&f, text).unwrap();
    f
}

fn peer(from: &str) -> Value {
    let (ns, sa, ip) = match from {
        "customer" => ("yaobank", "customer", "10.0.0.1"),
        "summary" => ("yaobank", "summary", "10.0.0.2"),
        "database" => ("yaobank", "database", "10.0.0.3"),
        "ingress gateway" => (
            "istio-system",
            "istio-ingressgateway-service-account",
            "10.0.9.1",
        ),
        other => panic!("unknown source {other:?} in the yaobank table"),
    };
    json!({"principal": format!("spiffe://cluster.local/ns/{ns}/sa/{sa}"), "address": ip, "port": 40000})
}

fn destination(to: &str) -> Value {
    let (ip, port) = match to {
        "customer" => ("10.0.0.1", 80),
        "summary" => ("10.0.0.2", 80),
        "database" => ("10.0.0.3", 2379),
        other => panic!("unknown destination {other:?}"),
    };
    json!({"principal": format!("spiffe://cluster.local/ns/yaobank/sa/{to}"), "address": ip, "port": port, "protocol": "TCP"})
}

/// `200` -> allowed; `403 denied by policy` -> status 403, reason policy_denied; `dropped (X)`:
/// Calico's dataplane stops the connection first, X is what the filter would answer.
fn expect(answer: &str) -> (Option<u64>, &'static str) {
    let answer = answer.trim();
    let answer = answer
        .strip_prefix("dropped (")
        .and_then(|a| a.strip_suffix(')'))
        .unwrap_or(answer);
    match answer.trim() {
        "200" => (None, "allow"),
        "403 denied by policy" => (Some(403), "policy_denied"),
        other => panic!("unknown answer {other:?} in the yaobank table"),
    }
}

#[test]
fn the_tutorial_decisions_are_what_control_decides() {
    let control = alp_e2e::artifacts::control().expect("the control binary is required");
    let page = read("docs/yaobank.md");
    let rows: Vec<Vec<String>> = page
        .lines()
        .skip_while(|l| !l.starts_with("| from | to | request |"))
        .skip(2)
        .take_while(|l| l.starts_with('|'))
        .map(|l| {
            l.trim_matches('|')
                .split('|')
                .map(|c| c.trim().trim_matches('`').to_string())
                .collect()
        })
        .collect();
    assert!(
        rows.len() >= 6,
        "the decisions table of docs/yaobank.md: {rows:?}"
    );
    let dir = alp_e2e::stack::RunDir::create("alp-yaobank-doc").unwrap();
    let workloads = inventory(&dir.path);
    let app = root().join("envoy/kubernetes/yaobank");
    // Before the policy: the namespace and app files only; with it: the whole directory.
    let before = dir.path.join("before");
    std::fs::create_dir_all(&before).unwrap();
    for f in ["00-namespace.yaml", "10-app.yaml"] {
        std::fs::copy(app.join(f), before.join(f)).unwrap();
    }
    for row in &rows {
        let [from, to, request, before_answer, with_answer] = row.as_slice() else {
            panic!("a row of five cells expected: {row:?}")
        };
        let (method, path) = request.split_once(' ').unwrap();
        let req = json!({"source": peer(from), "destination": destination(to), "http": {"method": method, "path": path, "host": to}});
        for (policy_dir, answer) in [(&before, before_answer), (&app, with_answer)] {
            let mut child = Command::new(&control)
                .args(["check", "--policy"])
                .arg(policy_dir)
                .arg("--policy")
                .arg(&workloads)
                .args(["--workload", &format!("yaobank/{to}"), "--request", "-"])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            use std::io::Write as _;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(req.to_string().as_bytes())
                .unwrap();
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "control check: {}",
                String::from_utf8_lossy(&out.stderr)
            );
            let got: Value = serde_json::from_slice(&out.stdout).unwrap();
            let (status, reason) = expect(answer);
            assert_eq!(
                (got["status"].as_u64(), got["reason"].as_str().unwrap_or("")),
                (status, reason),
                "{from} -> {to} {request} ({}): the page says {answer}, control check says {got}",
                rel(policy_dir)
            );
        }
    }
}
