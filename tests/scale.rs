//! Large clusters: a node's document holds what that node needs (its /etc/hosts lists
//! the API, itself and the nodes it talks to; gateways list the ingress workers), so
//! its size does not grow with the worker count. A document that cannot fit OpenStack's
//! user-data limit is refused with its node and size.

mod common;

use common::{files_of, render_in, run};
use paasgen::render::{base64_len, NodeDocument, NOVA_USER_DATA_LIMIT};
use paasgen::spec;
use std::process::Command;

fn render_workers(workers: usize) -> Vec<NodeDocument> {
    let dir = tempfile::tempdir().unwrap();
    render_workers_in(dir.path(), workers)
}

/// Renders with the PKI kept in `state`: keys differ in length by a few bytes from one
/// issue to the next, so size comparisons use the same PKI.
fn render_workers_in(state: &std::path::Path, workers: usize) -> Vec<NodeDocument> {
    let text = spec::example_with_workers(workers);
    let spec = spec::parse("big.yaml", &text).unwrap().0;
    let (_, docs) = render_in(state, &spec);
    assert_eq!(docs.len(), workers + 8);
    docs
}

fn text_of(doc: &NodeDocument, path: &str) -> String {
    String::from_utf8(common::file(&files_of(doc), path).bytes.clone()).unwrap()
}

fn largest(docs: &[NodeDocument]) -> (&str, usize) {
    docs.iter()
        .map(|d| (d.name.as_str(), d.user_data.len()))
        .max_by_key(|(_, len)| *len)
        .unwrap()
}

#[test]
fn five_thousand_workers_render_and_the_largest_document_does_not_grow() {
    let state = tempfile::tempdir().unwrap();
    let small = render_workers_in(state.path(), 100);
    let big = render_workers_in(state.path(), 5000);
    for d in small.iter().chain(&big) {
        assert!(
            base64_len(d.user_data.len()) <= NOVA_USER_DATA_LIMIT,
            "{}: {} bytes",
            d.name,
            d.user_data.len()
        );
    }
    assert_eq!(largest(&small), largest(&big));
    // Not only the largest: no role's documents grow with the worker count.
    for (a, b) in small.iter().zip(&big).take(8) {
        assert_eq!((&a.name, a.user_data.len()), (&b.name, b.user_data.len()));
    }
    // Workers differ only by their own name and address (a digit or two longer).
    let largest_worker = |docs: &[NodeDocument]| largest(&docs[8..]).1;
    assert!(
        largest_worker(&big) <= largest_worker(&small) + 64,
        "{} vs {}",
        largest_worker(&big),
        largest_worker(&small)
    );
}

#[test]
fn each_node_lists_the_api_itself_and_only_the_nodes_it_talks_to() {
    let docs = render_workers(1000);
    let doc = |name: &str| docs.iter().find(|d| d.name == name).unwrap();
    let hosts_of = |name: &str| -> Vec<String> {
        text_of(doc(name), "/etc/hosts")
            .lines()
            .filter(|l| l.starts_with("192.168."))
            .map(|l| l.split_whitespace().last().unwrap().to_string())
            .collect()
    };
    let control = [
        "gw-1", "gw-2", "etcd-1", "etcd-2", "etcd-3", "master-1", "master-2", "master-3",
    ];
    let with = |names: &[&str]| -> Vec<String> {
        std::iter::once("api")
            .chain(names.iter().copied())
            .map(String::from)
            .collect()
    };
    assert_eq!(hosts_of("worker-1"), with(&["worker-1"]));
    assert_eq!(hosts_of("worker-1000"), with(&["worker-1000"]));
    assert_eq!(hosts_of("etcd-2"), with(&["etcd-1", "etcd-2", "etcd-3"]));
    assert_eq!(
        hosts_of("master-3"),
        with(&["etcd-1", "etcd-2", "etcd-3", "master-1", "master-2", "master-3"])
    );
    let mut gateway = control.to_vec();
    gateway.extend(["worker-1", "worker-2"]);
    assert_eq!(hosts_of("gw-1"), with(&gateway));
    assert!(text_of(doc("worker-1000"), "/etc/hosts")
        .contains("192.168.4.250 worker-1000.demo.internal worker-1000\n"));
    // The gateways send ingress traffic to worker-1 and worker-2 only: the example
    // labels them.
    let haproxy = text_of(doc("gw-2"), "/etc/haproxy/haproxy.cfg");
    assert_eq!(haproxy.matches(":30080 check").count(), 2, "{haproxy}");
    assert!(haproxy.contains("server worker-2 192.168.1.2:30443 check"));
}

/// Without any `ingress: "true"` label every worker is an ingress backend, up to
/// `MAX_INGRESS_BACKENDS`; beyond that validation names what to do.
#[test]
fn ingress_backends_fall_back_to_every_worker_and_are_capped() {
    let unlabelled = |workers: usize| {
        spec::example_with_workers(workers)
            .replace(", labels: { ingress: \"true\", zone: a }", "")
            .replace(", labels: { ingress: \"true\" }", "")
    };
    let max = spec::MAX_INGRESS_BACKENDS;
    let spec = spec::parse("c.yaml", &unlabelled(max)).unwrap().0;
    let dir = tempfile::tempdir().unwrap();
    let (_, docs) = render_in(dir.path(), &spec);
    let haproxy = text_of(&docs[0], "/etc/haproxy/haproxy.cfg");
    assert_eq!(haproxy.matches(":30443 check").count(), max);
    assert!(base64_len(docs[0].user_data.len()) <= NOVA_USER_DATA_LIMIT);

    let err = spec::parse("c.yaml", &unlabelled(max + 1))
        .unwrap_err()
        .to_string();
    assert!(
        err.contains(&format!(
            "{} workers and none labelled `ingress: \"true\"`",
            max + 1
        )) && err.contains("label the workers that run the ingress controller"),
        "{err}"
    );

    let all_labelled = unlabelled(max + 1).replace(
        "role: worker, private_ip",
        "role: worker, labels: { ingress: \"true\" }, private_ip",
    );
    let err = spec::parse("c.yaml", &all_labelled)
        .unwrap_err()
        .to_string();
    // nodes[0..7] are the control plane: the (max+1)-th worker is nodes[max + 8].
    assert!(
        err.contains(&format!("nodes[{}].labels.ingress", max + 8))
            && err.contains(&format!("at most {max}")),
        "{err}"
    );
}

#[test]
fn an_oversized_document_is_refused_by_validate_and_render_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    // Every document carries every SSH key: 700 of them cannot fit.
    let key = "  - ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGiug3cgxdqRmML7UZqzadtSetqW+qMl+1k7dEwZhO5j operator@example\n";
    let text = spec::EXAMPLE.replacen(key, &key.repeat(700), 1);
    assert_ne!(text, spec::EXAMPLE);
    std::fs::write(dir.path().join("cluster.yaml"), text).unwrap();
    for verb in ["validate", "render"] {
        let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir.path())
            .arg(verb));
        assert!(!ok, "{verb}: {out}");
        assert!(
            out.contains("the user-data of node gw-1 is")
                && out.contains("over OpenStack's limit of 65535"),
            "{verb}: {out}"
        );
    }
    assert!(!dir.path().join("out").exists());
    // Render held the state dir's lock while it tried: the lock file is all there is.
    let state: Vec<_> = std::fs::read_dir(dir.path().join(".paasgen"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(state.iter().all(|n| n == "lock"), "{state:?}");
}

#[test]
fn init_refuses_worker_counts_that_validate_would_refuse() {
    let dir = tempfile::tempdir().unwrap();
    let init = |workers: &str| {
        run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir.path())
            .args(["init", "--force", "--workers", workers]))
    };
    for (workers, expected) in [("0", "at least one worker"), ("64000", "--workers 64000")] {
        let (ok, out) = init(workers);
        assert!(!ok, "--workers {workers}: {out}");
        assert!(out.contains(expected), "--workers {workers}: {out}");
        assert!(
            !dir.path().join("cluster.yaml").exists(),
            "--workers {workers}"
        );
    }
    // 1: the example's volume path of worker-2 goes with it
    for workers in ["1", "5000"] {
        let (ok, out) = init(workers);
        assert!(ok, "{out}");
        let (ok, out) = run(Command::new(env!("CARGO_BIN_EXE_paasgen"))
            .current_dir(dir.path())
            .arg("validate"));
        assert!(ok && out.contains("ok"), "--workers {workers}: {out}");
    }
}

/// `cargo test --release --test scale -- --ignored --nocapture`: plan and launch against
/// the in-memory cloud at 1,000 and 5,000 workers (scripts/bench-render prints it).
/// Prints figures; asserts only that everything was created.
#[test]
#[ignore]
fn plan_and_launch_times_in_memory() {
    use paasgen::cloud::apply::Options;
    use paasgen::cloud::memory::MemoryCloud;
    use paasgen::cloud::state::StateFile;
    use paasgen::cloud::{desired, plan, Cloud};
    use std::time::{Duration, Instant};
    for workers in [1000, 5000] {
        let text = spec::example_with_workers(workers);
        let spec = spec::parse("big.yaml", &text).unwrap().0;
        let dir = tempfile::tempdir().unwrap();
        let (_, docs) = render_in(dir.path(), &spec);
        let want = desired::resources(&spec, &docs).unwrap();
        let cloud = MemoryCloud::new();
        let state = StateFile::new(dir.path());
        let opts = Options {
            backoff: Duration::from_millis(1),
            ..Options::default()
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let timed = |what: &str, f: &mut dyn FnMut()| {
            let start = Instant::now();
            f();
            println!(
                "{what:<22} {workers:>5} workers ({:>5} resources): {:>8.1} ms",
                want.len(),
                start.elapsed().as_secs_f64() * 1e3
            );
        };
        timed("plan (empty cloud)", &mut || {
            let p = plan::plan(&want, &rt.block_on(cloud.inventory("demo")).unwrap());
            assert_eq!(p.to_create().count(), want.len());
        });
        timed("launch (create all)", &mut || {
            let out = common::launch_in_memory(&cloud, &state, &docs, &want, &opts).unwrap();
            assert_eq!(out.created.len(), want.len());
        });
        timed("plan (all exist)", &mut || {
            let p = plan::plan(&want, &rt.block_on(cloud.inventory("demo")).unwrap());
            assert!(p.is_empty());
        });
        timed("launch (nothing to do)", &mut || {
            let out = common::launch_in_memory(&cloud, &state, &docs, &want, &opts).unwrap();
            assert!(out.created.is_empty());
        });
    }
}

/// `cargo test --release --test scale -- --ignored --nocapture launch_far_away`: the
/// launcher's own scheduling against a cloud 200 ms away with room for any number of
/// calls (the in-memory cloud: every call takes 200 ms, a server is BUILD for 2 s), 50
/// workers, `--parallel 1` against the default. What is left at the default is the
/// chain of dependencies and of anti-affinity placements. Prints figures.
#[test]
#[ignore]
fn launch_far_away_in_memory() {
    use paasgen::cloud::apply::Options;
    use paasgen::cloud::desired;
    use paasgen::cloud::memory::MemoryCloud;
    use paasgen::cloud::state::StateFile;
    use std::time::{Duration, Instant};
    let text = spec::example_with_workers(50);
    let spec = spec::parse("far.yaml", &text).unwrap().0;
    let mut took = Vec::new();
    for parallel in [1, Options::default().parallel] {
        let dir = tempfile::tempdir().unwrap();
        let (_, docs) = render_in(dir.path(), &spec);
        let want = desired::resources(&spec, &docs).unwrap();
        let cloud = MemoryCloud::new();
        cloud.far_away(Duration::from_millis(200), Duration::from_secs(2));
        let opts = Options {
            parallel,
            ..Options::default()
        };
        let start = Instant::now();
        let out =
            common::launch_in_memory(&cloud, &StateFile::new(dir.path()), &docs, &want, &opts)
                .unwrap();
        assert_eq!(out.created.len(), want.len());
        let t = start.elapsed().as_secs_f64();
        println!(
            "far-away memory cloud, 50 workers ({} resources) --parallel {parallel:<2}: {t:6.1} s",
            want.len()
        );
        took.push(t);
    }
    println!("--parallel 1 / default = {:.1}x", took[0] / took[1]);
}
