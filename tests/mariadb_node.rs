//! The replicated MariaDB's node program (templates/charts/mariadb/files/node.sh) run
//! against Debian's real mariadbd, mariadb-backup and mbstream on loopback: the test
//! stands in for the chart's elector (it writes each node's `desired` role) and for
//! `kubectl exec` (it pipes one node's backup stream into another's seed).
mod common;

use common::mariadb::*;
use std::time::{Duration, Instant};

#[test]
fn replicas_seed_from_a_backup_stream_and_resume_from_their_gtid_position() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let primary = new_primary(tmp.path(), listen_port(10));
    let mut rows: Vec<u64> = (0..5)
        .map(|i| insert(&primary, &format!("before-{i}")))
        .collect();
    // The binlogs that hold these rows are gone: a new replica cannot replay them, it
    // has to start from a backup.
    primary.sql_ok("FLUSH BINARY LOGS; PURGE BINARY LOGS BEFORE NOW() + INTERVAL 1 SECOND");
    let first_binlog = primary.sql_ok("SHOW BINARY LOGS");
    assert!(
        !first_binlog.contains(".000001"),
        "binlogs not purged: {first_binlog}"
    );

    let (mut replica, seeded) = new_replica(tmp.path(), "node-1", listen_port(11), 2, &primary);
    assert!(
        seeded.contains("seeded from a backup at GTID 0-1-"),
        "{seeded}"
    );
    replica.wait_rows(&rows);

    // A write is acknowledged by the replica (semi-sync), and the replica refuses writes.
    let acks = semi_sync_acks(&primary);
    rows.push(insert(&primary, "semi-sync"));
    assert!(
        semi_sync_acks(&primary) > acks,
        "the write was not acknowledged by a replica"
    );
    replica.wait_rows(&rows);
    let refused = replica.sql("INSERT INTO app.t (v) VALUES ('on a replica')");
    assert!(
        refused.is_err_and(|e| e.contains("read-only")),
        "a replica took a write"
    );

    // Restarted, it resumes from its own GTID position with the rows written meanwhile.
    assert_eq!(replica.stop(), 0, "a clean stop exits 0");
    for i in 0..5 {
        rows.push(insert(&primary, &format!("while-down-{i}")));
    }
    replica.start();
    replica.wait_role("replica");
    replica.wait_rows(&rows);
    let resumed = replica.log();
    let start = resumed
        .lines()
        .rfind(|l| l.contains("replication starts at GTID position"))
        .expect("the replica says where it resumes");
    assert!(
        !start.contains("position ''"),
        "resumed from nothing: {start}"
    );
    eprintln!("resumed: {start}");
}

#[test]
fn a_fenced_primary_refuses_writes_until_it_is_told_it_is_primary_again() {
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let primary = new_primary(tmp.path(), listen_port(30));
    insert(&primary, "before");
    primary.desire("fenced");
    primary.wait_role("fenced");
    let refused = primary.sql("INSERT INTO app.t (v) VALUES ('fenced')");
    assert!(
        refused.is_err_and(|e| e.contains("read-only")),
        "a fenced primary took a write"
    );
    primary.desire("primary");
    primary.wait_role("primary");
    insert(&primary, "after");
    assert_eq!(primary.rows().len(), 2);
}

#[test]
fn a_lost_primary_is_replaced_by_the_replica_that_received_most_and_no_acknowledged_write_is_lost()
{
    if !prerequisites() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let mut primary = new_primary(tmp.path(), listen_port(20));
    let replicas = [
        new_replica(tmp.path(), "node-1", listen_port(21), 2, &primary).0,
        new_replica(tmp.path(), "node-2", listen_port(22), 3, &primary).0,
    ];

    // A client writes without pause, to whichever node is primary.
    let writer = Writer::start(Some(primary.port));
    writer.wait_flowing(50);
    // The primary's machine is gone mid-write.
    primary.kill();
    let lost_at = Instant::now();

    // The elector's choice: once the replicas' status has settled, the one that received
    // the most of the old primary's history.
    std::thread::sleep(Duration::from_secs(2));
    let received = |r: &Node| -> u64 {
        let s = r.status();
        let pos = s.get("received").cloned().unwrap_or_default();
        pos.rsplit('-').next().unwrap_or("0").parse().unwrap_or(0)
    };
    let chosen = if received(&replicas[0]) >= received(&replicas[1]) {
        0
    } else {
        1
    };
    let (new, other) = (&replicas[chosen], &replicas[1 - chosen]);
    eprintln!(
        "received: node-1 {}, node-2 {}; promoting {}",
        received(&replicas[0]),
        received(&replicas[1]),
        new.name
    );
    new.desire("primary");
    other.desire(&format!("replica 127.0.0.1 {}", new.port));
    new.wait_role("primary");
    writer.send_to(Some(new.port));
    other.wait_role("replica");

    let (first_failure, recovered, acked) = writer.until_recovered();
    eprintln!(
        "writes failed for {:.1} s (from the first failed write to the first acknowledged \
         on the new primary; the old one was killed {:.1} s before that failure)",
        (recovered - first_failure).as_secs_f64(),
        first_failure
            .saturating_duration_since(lost_at)
            .as_secs_f64()
    );
    assert!((recovered - first_failure) < Duration::from_secs(60));

    // Every write the client saw acknowledged is on the new primary and its replica.
    let have = new.rows();
    let missing: Vec<_> = acked.iter().filter(|id| !have.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "acknowledged writes missing after failover: {missing:?}"
    );
    other.wait_rows(&acked);
    eprintln!(
        "{} acknowledged writes, all on {} and {}",
        acked.len(),
        new.name,
        other.name
    );

    // The old primary comes back told to follow: it retires its data (kept beside) and
    // stops; re-seeded from the new primary, it replicates.
    primary.desire(&format!("replica 127.0.0.1 {}", new.port));
    primary.start();
    assert_eq!(
        primary.wait_exit(),
        3,
        "a former primary told to follow must retire: {}",
        primary.log()
    );
    assert!(primary.command("needs-seed").status().unwrap().success());
    seed(new, &primary);
    let kept: Vec<_> = std::fs::read_dir(tmp.path().join("node-0"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with("data.retired-"))
        .collect();
    assert_eq!(
        kept.len(),
        1,
        "the retired datadir is kept beside the new one"
    );
    primary.start();
    primary.wait_role("replica");
    let last = insert(new, "after-rejoin");
    primary.wait_rows(&[last]);
}
