//! The bundled example grown to many workers: for scale tests and benchmarks.

use super::EXAMPLE;

/// The example spec text with a /16 private network and `workers` workers; worker-1 and
/// worker-2 are the ingress nodes, as in the example.
pub fn example_with_workers(workers: usize) -> String {
    let mut text: String = EXAMPLE
        .lines()
        .filter(|l| !l.contains("role: worker"))
        // the example's own volume path is worker-2's
        .filter(|l| workers >= 2 || !l.contains("node_paths: { worker-2"))
        .map(|l| format!("{l}\n"))
        .collect();
    text = text.replacen(
        "private_cidr: 192.168.0.0/24",
        "private_cidr: 192.168.0.0/16",
        1,
    );
    for i in 0..workers {
        let labels = match i {
            0 => ", labels: { ingress: \"true\", zone: a }",
            1 => ", labels: { ingress: \"true\" }",
            _ => "",
        };
        text.push_str(&format!(
            "  - {{ name: worker-{}, role: worker, private_ip: 192.168.{}.{}{labels} }}\n",
            i + 1,
            1 + i / 250,
            1 + i % 250
        ));
    }
    text
}
