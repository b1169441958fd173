//! Consumer groups under traffic: commit -> checkpoint, and where each
//! tool would resume the groups on the target after a failover.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use rdkafka::consumer::Consumer as _;

use strait_common::model::{NextOffset, TopicPartition};
use strait_controller::native_admin::{list_group_offsets, GroupCommits};

use crate::measure::{self, Key, Tail};
use crate::report::Results;
use crate::session::{Env, GroupsPlan, PARTITIONS};
use crate::tools::{Names, Running};
use crate::workload::{self, lister};

#[derive(Clone, Copy)]
enum Phase {
    /// Until every group has had a checkpoint.
    Warmup,
    /// Commits are timed from this moment, for the window.
    Measuring(Instant),
    /// Until the timed commits are checkpointed (or never will be).
    Draining,
    /// The groups stop, one by one from this moment.
    Stopping(Instant),
}

/// Groups consuming under traffic: every second each group commits its two
/// partitions a little behind the source's end; commit -> checkpoint is
/// taken for the commits of the measuring window after every group has had
/// a first checkpoint. Then, once those are checkpointed, the groups stop,
/// one by one over one checkpoint interval, and fail over: where each tool's own translation (and the
/// newest checkpoints at each group's stop) would resume them on the
/// target, against where they stopped.
#[allow(clippy::too_many_arguments)]
pub fn groups(
    tool: &mut Running,
    names: &Names,
    env: &Env,
    plan: GroupsPlan,
    topic: &str,
    layout: &[(String, [i32; 2])],
    res: &mut Results,
) -> anyhow::Result<()> {
    use rand::Rng as _;
    let col = tool.column;
    let remote = names.remote(topic);
    let cp_topic = names.checkpoints_topic();
    let interval = col.checkpoint_interval();
    let window = env.cp_window(col);
    let c = lister(&env.target);
    strait_testkit::wait_for("the checkpoints topic", Duration::from_secs(180), || {
        workload::exists(&c, &cp_topic)
    });
    let tail = Tail::start(&env.target, &cp_topic);
    let stream = workload::Stream::start(&env.source, topic, PARTITIONS, env.stream_rate);
    let admin = workload::group_admin(&env.source);
    let keys: Vec<Key> = layout
        .iter()
        .flat_map(|(g, ps)| ps.iter().map(|p| (g.clone(), remote.clone(), *p)))
        .collect();
    let mut positions: HashMap<(usize, i32), i64> = HashMap::new();
    let mut rng = rand::rng();
    let warmup_deadline = Instant::now() + 3 * interval + Duration::from_secs(180);
    // Then the groups that fail over stop one by one, spread over one
    // checkpoint interval of the tool (the full version), each moving to
    // the target at its stop: the moments fall on every point of the
    // tool's checkpoint cycle, not just after a checkpoint round.
    let stagger = if plan.failover && !env.quick {
        interval
    } else {
        Duration::ZERO
    };
    let n = layout.len();
    // Per group that stopped: the newest checkpoints at its stop.
    let mut at_stop: Vec<Option<HashMap<Key, (i64, i64)>>> = vec![None; n];
    let mut phase = Phase::Warmup;
    let mut commits = 0usize;
    let begun = Instant::now();
    let mut tick = 0u64;
    let mut last_measured = Instant::now();
    let mut failed_commits = 0usize;
    loop {
        match phase {
            Phase::Warmup if tail.covers(&keys) == keys.len() => {
                phase = Phase::Measuring(Instant::now());
                eprintln!(
                    "  {}: every group checkpointed {:.1} s after the traffic began",
                    col.title(),
                    begun.elapsed().as_secs_f64()
                );
            }
            Phase::Warmup if Instant::now() > warmup_deadline => bail!(
                "{} checkpointed {} of {} group partitions within {:?}",
                col.title(),
                tail.covers(&keys),
                keys.len(),
                warmup_deadline - begun
            ),
            Phase::Measuring(since) if since.elapsed() >= window => phase = Phase::Draining,
            // The last measured commits wait for the next checkpoint round
            // while the groups go on; one not checkpointed by the round
            // after it never will be (MirrorMaker 2 emits a checkpoint only
            // when the translated offset advances).
            Phase::Draining
                if tail.pending_measured() == 0
                    || last_measured.elapsed() > interval + Duration::from_secs(10) =>
            {
                phase = Phase::Stopping(Instant::now());
            }
            _ => {}
        }
        if let Phase::Stopping(since) = phase {
            let due: Vec<usize> = (0..n)
                .filter(|&i| at_stop[i].is_none())
                .filter(|&i| since.elapsed() >= stagger.mul_f64(i as f64 / n as f64))
                .collect();
            if !due.is_empty() {
                let newest = tail.newest_now()?;
                for i in due {
                    at_stop[i] = Some(newest.clone());
                }
            }
            if at_stop.iter().all(Option::is_some) {
                break;
            }
        }
        ensure!(tool.alive(), "{} exited", col.title());
        let acked = stream.acked.lock().unwrap().clone();
        let measured = matches!(phase, Phase::Measuring(_));
        let mut batch: Vec<GroupCommits> = Vec::with_capacity(n);
        // (batch index, group index, key, position) of each partition that moved.
        let mut moved = Vec::new();
        for (i, (g, ps)) in layout.iter().enumerate() {
            if at_stop[i].is_some() {
                continue; // stopped: its last commit stays
            }
            let mut offsets = Vec::new();
            for &p in ps {
                let lag = rng.random_range(0..=50i64);
                let prev = positions.get(&(i, p)).copied().unwrap_or(0);
                let pos = (acked[p as usize] - lag).max(prev);
                if pos > prev {
                    moved.push((batch.len(), i, (g.clone(), remote.clone(), p), pos));
                }
                offsets.push((TopicPartition::new(topic, p), NextOffset(pos)));
            }
            batch.push((g.clone(), offsets));
        }
        // Noted before the request: a checkpoint may follow its answer at once.
        let at = Instant::now();
        if measured {
            last_measured = at;
        }
        for (_, _, key, pos) in &moved {
            tail.committed(key.clone(), *pos, at, measured);
        }
        let outcomes = workload::commit_each(&admin, &batch);
        for (b, i, key, pos) in moved {
            if outcomes[b].is_ok() {
                positions.insert((i, key.2), pos);
                commits += usize::from(measured);
            } else {
                tail.forget(&key, pos);
            }
        }
        let failed: Vec<&String> = outcomes.iter().filter_map(|r| r.as_ref().err()).collect();
        if let Some(e) = failed.first() {
            failed_commits += failed.len();
            eprintln!(
                "  {} group commits failed this second, first: {e}",
                failed.len()
            );
        }
        tick += 1;
        let next = begun + Duration::from_secs(tick);
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    // The newest checkpoints of each group's partitions when it stopped:
    // what RemoteClusterUtils.translateOffsets returned at that moment.
    let from_cp: HashMap<Key, i64> = layout
        .iter()
        .zip(&at_stop)
        .flat_map(|((g, ps), newest)| {
            let newest = newest.as_ref().expect("every group stopped");
            ps.iter().filter_map(|&p| {
                let key = (g.clone(), remote.clone(), p);
                newest.get(&key).map(|(_, down)| (key, *down))
            })
        })
        .collect();
    let own: HashMap<Key, i64> = match &tool.config {
        _ if !plan.failover => HashMap::new(),
        // strait's own path asks the source for each group's (last)
        // commit: once every group stopped.
        Some(config) => strait_failover(config, names, env, layout, &remote)?,
        None => {
            // MirrorMaker 2's own code reads the same checkpoints: checked
            // for the first group (it may have moved on since it stopped).
            let g = &layout[0].0;
            let java = strait_testkit::mm2::mm2_translate(&env.target, &names.source_alias, g);
            let after = tail.newest_now()?;
            for p in layout[0].1 {
                let key = (g.clone(), remote.clone(), p);
                let got = java
                    .get(&(remote.clone(), p))
                    .map(|(offset, _metadata)| *offset);
                let (lo, hi) = (from_cp.get(&key).copied(), after.get(&key).map(|c| c.1));
                ensure!(
                    got.is_some() && got >= lo && got <= hi,
                    "RemoteClusterUtils.translateOffsets gave {got:?} for {g} {remote}/{p}; the checkpoints read said {lo:?}..{hi:?}"
                );
            }
            from_cp.clone()
        }
    };
    let written = stream.stop()?;
    measure::caught_up(
        &env.source,
        topic,
        &env.target,
        &remote,
        PARTITIONS,
        env.timeout,
    )?;
    let landed = measure::landed(
        &env.target,
        &remote,
        PARTITIONS,
        written.iter().sum::<i64>() as usize,
    )?;
    for (p, recs) in landed.iter().enumerate() {
        let have: std::collections::BTreeSet<i64> = recs.iter().map(|(_, s)| *s).collect();
        let lost = (0..written[p]).filter(|s| !have.contains(s)).count();
        ensure!(
            lost == 0,
            "{}: {lost} records of {topic}/{p} never reached the target",
            col.title()
        );
    }
    if plan.failover {
        for (path, translated) in [("tool", &own), ("cp", &from_cp)] {
            let (mut reread, mut skipped) = (Vec::new(), Vec::new());
            for (i, (g, ps)) in layout.iter().enumerate() {
                let (mut r, mut s) = (0, 0);
                for &p in ps {
                    let key = (g.clone(), remote.clone(), p);
                    let at = *translated.get(&key).with_context(|| {
                        format!(
                            "{}: no translated position for {key:?} ({path})",
                            col.title()
                        )
                    })?;
                    let (rr, ss) = measure::reread_and_skipped(
                        &landed[p as usize],
                        // A group that never moved is at its first commit, 0.
                        positions.get(&(i, p)).copied().unwrap_or(0),
                        written[p as usize],
                        at,
                    );
                    r += rr;
                    s += ss;
                }
                reread.push(r);
                skipped.push(s);
            }
            let (rt, rm) = (reread.iter().sum::<u64>(), *reread.iter().max().unwrap());
            let (st, sm) = (skipped.iter().sum::<u64>(), *skipped.iter().max().unwrap());
            eprintln!(
                "  {} failover ({path}): read twice {rt} (max {rm} per group), skipped {st} (max {sm})",
                col.title()
            );
            res.add(col, &format!("fo.{path}.reread"), rt as f64);
            res.add(col, &format!("fo.{path}.reread_max"), rm as f64);
            res.add(col, &format!("fo.{path}.skipped"), st as f64);
            res.add(col, &format!("fo.{path}.skipped_max"), sm as f64);
        }
    }
    if plan.checkpoints {
        let seen = tail.seen();
        ensure!(
            failed_commits * 10 <= commits,
            "{}: {failed_commits} group commits failed beside {commits} that were made",
            col.title()
        );
        ensure!(
            !seen.is_empty(),
            "{}: no measured commit was checkpointed",
            col.title()
        );
        eprintln!(
            "  {} checkpoints at {n} groups: {} of {commits} commits, p50 {:.2?}, p99 {:.2?}",
            col.title(),
            seen.len(),
            measure::percentile(&seen, 0.5),
            measure::percentile(&seen, 0.99)
        );
        res.add(
            col,
            &format!("cp{n}.p50"),
            measure::percentile(&seen, 0.5).as_secs_f64(),
        );
        res.add(
            col,
            &format!("cp{n}.p99"),
            measure::percentile(&seen, 0.99).as_secs_f64(),
        );
        res.add(
            col,
            &format!("cp{n}.unseen"),
            tail.pending_measured() as f64,
        );
    }
    Ok(())
}

/// `strait offsets failover --groups REGEX`: commits the translated
/// positions to the same groups on the target; returns them, read back.
fn strait_failover(
    config: &std::path::Path,
    names: &Names,
    env: &Env,
    layout: &[(String, [i32; 2])],
    remote: &str,
) -> anyhow::Result<HashMap<Key, i64>> {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_strait"))
        .args([
            "offsets",
            "failover",
            "--groups",
            &names.groups_regex,
            "--config",
        ])
        .arg(config)
        .output()?;
    if !out.status.success() {
        bail!(
            "strait offsets failover: {}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let admin = workload::group_admin(&env.target);
    let req: Vec<_> = layout
        .iter()
        .map(|(g, ps)| {
            (
                g.clone(),
                Some(
                    ps.iter()
                        .map(|p| TopicPartition::new(remote.to_owned(), *p))
                        .collect(),
                ),
            )
        })
        .collect();
    let mut got = HashMap::new();
    for ((g, _), r) in layout.iter().zip(list_group_offsets(
        admin.client(),
        &req,
        64,
        Duration::from_secs(30),
    )) {
        for (tp, o) in r.map_err(|e| anyhow::anyhow!("target offsets of {g}: {e:?}"))? {
            if let Some(NextOffset(o)) = o {
                got.insert((g.clone(), tp.topic, tp.partition), o);
            }
        }
    }
    Ok(got)
}
