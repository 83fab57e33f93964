"""docs/benchmarks.md and its plots, from the JSON `make bench` writes (and the abuse
soak's, `bench/results/soak_abuse.json`, which `python -m bench.soak_abuse` writes)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

COLORS = {"cairn": "#2f6f4e", "anvil": "#b0563a"}
SOAK_RESULTS = Path(__file__).resolve().parent / "results" / "soak_abuse.json"
SOAK_HEADING = "## Abuse soak"
WORKLOADS = ("transfers", "erc20")


def _tps(run: dict[str, Any], workload: str) -> float:
    """A run's tx/s for `workload`; 0 when that run failed (its `failed` says why)."""
    result = run.get(workload)
    return float(result["tx_per_s"]) if result else 0.0


def _runs(result: dict[str, Any]) -> str:
    runs = result.get("p99_runs_ms")
    shown = (str(r) if r is not None else "none answered" for r in runs or [])
    return f" ({', '.join(shown)})" if runs else ""


def _throughput_plot(report: dict[str, Any], path: Path) -> None:
    labels: list[str] = []
    cairn: list[float] = []
    anvil: list[float] = []
    for mode, entry in report["modes"].items():
        for workload, name in (("transfers", "transfers"), ("erc20", "ERC-20")):
            if workload not in entry["cairn"] and workload not in entry["anvil"]:
                continue
            labels.append(f"{name}\n{mode}")
            cairn.append(_tps(entry["cairn"], workload))
            anvil.append(_tps(entry["anvil"], workload))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], cairn, 0.4, label="Cairn (durable)", color=COLORS["cairn"])
    ax.bar([x + 0.2 for x in xs], anvil, 0.4, label="Anvil (in memory)", color=COLORS["anvil"])
    for x, (c, a) in enumerate(zip(cairn, anvil, strict=True)):
        for offset, value in ((-0.2, c), (0.2, a)):
            if value == 0:  # the run failed: say so where its bar would be
                ax.text(x + offset, 50, "failed", rotation=90, ha="center", va="bottom")
    ax.axhline(1000, color="grey", linestyle="--", linewidth=1, label="1,000 tx/s target")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("transactions per second (submit to receipt)")
    ax.set_title("Throughput, same workload and settings")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _latency_plot(reads: dict[str, dict[str, Any]], path: Path) -> None:
    methods = [m for m in reads["cairn"] if isinstance(reads["cairn"][m], dict)]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    xs = range(len(methods))
    for offset, name in ((-0.2, "cairn"), (0.2, "anvil")):
        p50 = [reads[name][m]["p50_ms"] for m in methods]
        p99 = [reads[name][m]["p99_ms"] for m in methods]
        ax.bar([x + offset for x in xs], p99, 0.4, color=COLORS[name], alpha=0.35)
        ax.bar(
            [x + offset for x in xs], p50, 0.4, color=COLORS[name], label=f"{name} p50 (p99 light)"
        )
    ax.axhline(100, color="grey", linestyle="--", linewidth=1, label="100 ms p99 target")
    ax.set_yscale("log")
    ax.set_xticks(list(xs))
    ax.set_xticklabels(methods, fontsize=8)
    ax.set_ylabel("latency, ms (log scale)")
    ax.set_title("Read latency under 64 concurrent clients")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_report(report: dict[str, Any], markdown: Path, images: Path) -> None:
    images.mkdir(parents=True, exist_ok=True)
    modes = list(report["modes"].values())
    _throughput_plot(report, images / "throughput.png")
    env = report["environment"]
    lines = [
        "# Benchmarks",
        "",
        "Produced by `make bench` (bench/run.py); raw figures in `bench/results/latest.json`.",
        f"Run on {env['date']}: {env['cpus']} cores, Python {env['python']}, {env['anvil']}.",
        "Cairn and Anvil get the same pre-signed transactions, chain id, accounts, gas limit and",
        "block time, one after the other on the same machine. Cairn commits every block with a",
        "synced LevelDB write before its receipts are visible; Anvil keeps its chain in memory.",
        "",
        "## Throughput",
        "",
        "W1: 10,000 EIP-1559 transfers from 100 senders; W2: 2,000 ERC-20 transfers.",
        "",
        "Timed from the first submit to the receipt of every transaction (HTTP batches of 500).",
        "",
        "![throughput](img/throughput.png)",
        "",
        "| mode | workload | Cairn tx/s | Anvil tx/s | Cairn / Anvil | Cairn blocks |",
        "|---|---|---:|---:|---:|---:|",
    ]
    for mode, entry in report["modes"].items():
        for workload in ("transfers", "erc20"):
            c, a = entry["cairn"].get(workload), entry["anvil"].get(workload)
            if c is None and a is None:
                continue
            cairn = f"{c['tx_per_s']:,.0f}" if c else "failed ²"
            anvil = f"{a['tx_per_s']:,.0f}" if a else "failed ²"
            if a and a.get("evm_mine_nudges"):
                anvil += " ¹"
            ratio = f"{c['tx_per_s'] / a['tx_per_s']:.2f}" if c and a else "n/a"
            blocks = c["blocks"] if c else "n/a"
            lines.append(f"| {mode} | {workload} | {cairn} | {anvil} | {ratio} | {blocks} |")
    lines.append("")
    if any(e["anvil"].get(w, {}).get("evm_mine_nudges") for e in modes for w in WORKLOADS):
        lines += [
            "¹ Anvil's automine stops mining when a flood of submissions leaves thousands of",
            "transactions pending (anvil 1.7.1); the harness then asks for a block with",
            "`evm_mine` after 0.2 s without progress, and the time includes those waits.",
            "",
        ]
    failures = [
        f"- {name}, {mode}: {entry[name]['failed']}"
        for mode, entry in report["modes"].items()
        for name in ("cairn", "anvil")
        if entry[name].get("failed")
    ]
    if failures:
        lines += ["² The run failed; the reasons recorded (`failed` in latest.json):", ""]
        lines += failures
    lines.append("")
    full = next(
        (e for e in report["modes"].values() if "reads" in e["cairn"] and "reads" in e["anvil"]),
        None,
    )
    if full is not None:
        reads = {"cairn": full["cairn"]["reads"], "anvil": full["anvil"]["reads"]}
        _latency_plot(reads, images / "latency.png")
        lines += [
            "## Read latency (W3: 64 concurrent clients, after W1 and W2)",
            "",
            "![latency](img/latency.png)",
            "",
            "p50 and p99 of the median of three 5-second runs per method; the p99 of every "
            "run in brackets.",
            "",
            "| method | Cairn req/s | Cairn p50 ms | Cairn p99 ms | Anvil req/s | Anvil p50 ms "
            "| Anvil p99 ms | p99 Cairn / Anvil |",
            "|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for method, c in reads["cairn"].items():
            if not isinstance(c, dict):
                continue
            a = reads["anvil"][method]
            p99_ratio = c["p99_ms"] / a["p99_ms"] if a["p99_ms"] else 0.0
            lines.append(
                f"| {method} | {c['requests_per_s']:,.0f} | {c['p50_ms']} "
                f"| {c['p99_ms']}{_runs(c)} | {a['requests_per_s']:,.0f} | {a['p50_ms']} "
                f"| {a['p99_ms']}{_runs(a)} "
                f"| {p99_ratio:.2f} |"
            )
        failed = [
            f"{name} {method}: {r['errors']} of {r['requests']}"
            for name, rs in reads.items()
            for method, r in rs.items()
            if isinstance(r, dict) and r.get("errors")
        ]
        lines += [
            "",
            f"`eth_getBlockByNumber(full)` asks for the largest recent block "
            f"({reads['cairn']['full_block_transactions']} transactions on Cairn, "
            f"{reads['anvil']['full_block_transactions']} on Anvil), about 1 MB of JSON per "
            "answer. The load generator (wrk, 2 threads) shares the machine's cores with the "
            "node, and both nodes mine a block every second during the run.",
            "",
            "Every answer counts: an error, a non-200 status or a timeout (10 s) is a failure. "
            'Answers under 64 KB are checked for `"result"` in wrk\'s Lua; for the 1 MB block '
            "that check made wrk itself the bottleneck (it copies every body into Lua: 1,900 "
            "instead of 3,300 answers/s), so there each run's bytes read are compared with the "
            "answer size of a checked warm-up run, an error answer being ~1 MB short. "
            + (f"Failures: {'; '.join(failed)}." if failed else "No request failed."),
            "",
            "Cairn runs `eth_call` in worker processes (`--rpc.call-workers`, one per core "
            f"by default, here {min(4, report['environment']['cpus'])}); the node's event loop "
            "serves HTTP and answers the workers' state reads.",
            "",
        ]
    restart = report.get("restart")
    if restart:
        lines += [
            "## Restart (W4: start to serving RPC, and memory at rest)",
            "",
            "Empty blocks on disk for both; Anvil's chain is saved with `--dump-state` and",
            "loaded with `--load-state`.",
            "",
            "| blocks | Cairn start s | Cairn RSS MiB | Anvil start s | Anvil RSS MiB |",
            "|---:|---:|---:|---:|---:|",
        ]
        for c, a in zip(restart["cairn"], restart["anvil"], strict=True):
            anvil = (
                f"{a['start_to_rpc_seconds']} | {a['rss_mib']}" if "rss_mib" in a else "n/a ³ | n/a"
            )
            workers = f" (+{c['workers_rss_mib']} ⁴)" if "workers_rss_mib" in c else ""
            lines.append(
                f"| {c['height']:,} | {c['start_to_rpc_seconds']} | {c['rss_mib']}{workers} "
                f"| {anvil} |"
            )
        lines += [
            "",
            "³ Anvil's `anvil_mine` slows down as its in-memory chain grows (past ~90,000 blocks",
            "one call of 1,000 blocks took over 30 s), so it is measured up to 10,000 blocks.",
            "",
            "⁴ In Cairn's worker processes (sender recovery and eth_call), at rest: each holds",
            "its own Python interpreter and py-evm; the node process's figure is the first.",
        ]
        lines.append("")
    lines += [
        "## What bounds Cairn's throughput",
        "",
        "`python -m bench.bench_stages` splits the CPU time of a full block (1,400 transfers):",
        "",
        "| stage | µs per transfer |",
        "|---|---:|",
    ]
    stages = report.get("stages", {})
    for stage, value in stages.get("us_per_tx", {}).items():
        lines.append(f"| {stage} | {value} |")
    if stages:
        lines += [
            "",
            f"Block building alone runs at {stages['build_tx_per_s']:,.0f} transfers/s of CPU; "
            f"decode, build and commit together at {stages['pipeline_tx_per_s']:,.0f}/s.",
            "Execution in py-evm (`apply_transaction`: message building, account updates through",
            "rlp objects, the state trie at the end of the block) bounds throughput; sender",
            "recovery (secp256k1) comes second and runs on a worker process, the second core,",
            "for batches; the synced LevelDB commit is a few percent. `--profile` prints the",
            "cProfile listing behind these figures.",
        ]
    lines.append("")
    lines += _p2p_section(report.get("p2p"))
    lines += _mirror_section(report.get("mirror"))
    lines += _validators_section(report.get("validators"))
    if SOAK_RESULTS.exists():
        lines += soak_section(json.loads(SOAK_RESULTS.read_text()))
    lines += _soak_section(report.get("soak"), images)
    markdown.write_text("\n".join(lines))


def _p2p_section(p2p: dict[str, Any] | None) -> list[str]:
    """W5: a fresh full node's range sync, and gossip latency across four nodes."""
    if not p2p:
        return []
    cfg, sync, gossip = p2p["config"], p2p["sync"], p2p["gossip"]
    node = sync.get("node_reported", {})
    return [
        "## Networking (W5, Cairn only: `python -m bench.bench_p2p`)",
        "",
        f"A sequencer makes {cfg['blocks']:,} blocks of {cfg['txs_per_block']} transfers; a "
        "fresh full node then syncs them by range over `/cairn/<chainid>/sync/1`, re-executing",
        f"every block. Then {gossip['txs']} transactions at {gossip['offered_tx_per_s']:g}/s go "
        f"to random nodes of {gossip['nodes']} (1 sequencer, {cfg['fullnodes']} full nodes).",
        "",
        "| figure | value |",
        "|---|---:|",
        f"| sync, blocks/s (node's own log) | {node.get('blocks_per_s', 'n/a')} |",
        f"| sync, tx/s (node's own log) | {node.get('tx_per_s', 'n/a')} |",
        f"| sync, blocks/s including process start | {sync['blocks_per_s']} |",
        f"| gossip: submission to block on every node, p50 ms | {gossip['p50_ms']} |",
        f"| gossip: p99 ms | {gossip['p99_ms']} |",
        f"| gossip: max ms | {gossip['max_ms']} |",
        "",
        f"Measured from {gossip.get('note', 'submission to inclusion on every node')}.",
        "",
    ]


def _validators_section(result: dict[str, Any] | None) -> list[str]:
    """Validator networks (BFT): period, finality, throughput beside Anvil, recovery."""
    if not result:
        return []
    cfg, nets = result["config"], result["networks"]
    anvil = result["anvil_single_node_throughput_30m"]
    single = result["cairn_single_node_throughput_30m"]

    def row(label: str, pick: Any) -> str:
        return f"| {label} | " + " | ".join(str(pick(n)) for n in nets) + " |"

    return [
        "## Validators (BFT, Cairn only but for throughput: `python -m bench.bench_validators`)",
        "",
        "Each validator a `cairn run` process on loopback on this one machine, block period "
        f"1 s, empty blocks on. Finality: {cfg['rate']:g} transfers/s for "
        f"{cfg['finality_seconds']:g} s spread over the validators, from submission to the "
        "block being the head of the validator it was sent to (a committed block is final). "
        f"Throughput: {cfg['flood']:,} pre-signed transfers sent as fast as taken, gas limit "
        f"30M; the same transfers into one `anvil --block-time 1` gave "
        f"{anvil['tx_per_s']:g} tx/s and into one `cairn dev --block-time 1` "
        f"{single['tx_per_s']:g} tx/s in the same run. Recovery: f + 1 validators killed "
        "(-9), the rest stall; the time from the last one restarted serving RPC to the next "
        "block.",
        "",
        "| figure | " + " | ".join(f"{n['validators']} validators" for n in nets) + " |",
        "|---|" + "---:|" * len(nets),
        row("block interval, mean s", lambda n: n["period"]["interval_mean_s"]),
        row("block interval, p99 s", lambda n: n["period"]["interval_p99_s"]),
        row("submission to finality, p50 ms", lambda n: n["finality"]["p50_ms"]),
        row("submission to finality, p99 ms", lambda n: n["finality"]["p99_ms"]),
        row("throughput, tx/s", lambda n: n["throughput_30m"]["tx_per_s"]),
        row("throughput, ratio to Anvil", lambda n: n["throughput_ratio_to_anvil"]),
        row("CPU per validator, mean % of a core", lambda n: n["cpu_percent_of_a_core"]["mean"]),
        row("recovery after f + 1 restarted, s", lambda n: n["recovery"]["seconds_to_next_block"]),
        "",
        "Every validator re-executes every block, on one machine: together the validators "
        "used "
        + ", ".join(
            f"{n['validators'] * n['cpu_percent_of_a_core']['mean'] / 100:.1f} cores "
            f"({n['validators']} validators)"
            for n in nets
        )
        + f" of its {result.get('cpus', 2)}, beside other jobs (load average when the run "
        "started: " + ", ".join(f"{x:.1f}" for x in result.get("load_average_at_start", [])) + ").",
        "",
        *(
            f"- {f['validators']} validators did not complete: {f['error']}"
            for f in result.get("failed", [])
        ),
        "",
    ]


def _mirror_section(mirror: dict[str, Any] | None) -> list[str]:
    """W5: mirror lag under a sustained load, and COPY catch-up speed."""
    if not mirror:
        return []
    off, on = mirror["load_without_mirror"], mirror["load_with_mirror"]
    lines = [
        "## Postgres mirror (W5, Cairn only: `python -m bench.bench_mirror`)",
        "",
        f"Pre-signed transfers offered at a steady rate for {on['offered_seconds']:g} s, first "
        "without and then with the mirror on a local Postgres 15; the lag is the node's head "
        "minus the mirror's cursor, sampled every ~0.25 s.",
        "",
        "| figure | without mirror | with mirror |",
        "|---|---:|---:|",
        f"| offered tx/s | {off['offered_tx_per_s']} | {on['offered_tx_per_s']} |",
        f"| mined tx/s while offered | {off['mined_tx_per_s_while_offered']} "
        f"| {on['mined_tx_per_s_while_offered']} |",
        f"| mirror lag, blocks p50 / p95 / max | | {on['mirror_lag_blocks_p50']:g} / "
        f"{on['mirror_lag_blocks_p95']:g} / {on['mirror_lag_blocks_max']:g} |",
        "",
        "Catch-up (a mirror started far behind; COPY batches):",
        "",
        "| chain | blocks | rows | seconds | blocks/s | rows/s |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for key, label in (
        ("catch_up_large_blocks", "large blocks (~250 transfers)"),
        ("catch_up_small_blocks", "small blocks (1 transfer)"),
    ):
        c = mirror.get(key)
        if c:
            lines.append(
                f"| {label} | {c['blocks']:,} | {c['rows']:,} | {c['seconds']} "
                f"| {c['blocks_per_s']:,.0f} | {c['rows_per_s']:,.0f} |"
            )
    return [*lines, ""]


def soak_section(soak: dict[str, Any]) -> list[str]:
    """The abuse soak: honest latency, transfers and blocks before, during and after abuse."""
    phases = ("baseline", "abuse", "recovery")
    seconds = soak["phases_s"]

    def row(label: str, key: str, fmt: str = "{}") -> str:
        cells = [
            fmt.format(soak[p][key]) if soak[p].get(key) is not None else "n/a" for p in phases
        ]
        return f"| {label} | " + " | ".join(cells) + " |"

    methods = sorted({m for p in phases for m in soak[p].get("p99_ms_by_method", {})})
    load = ", ".join(f"{x:.1f}" for x in soak.get("load_average_at_end", []))
    lines = [
        SOAK_HEADING,
        "",
        f"`python -m bench.soak_abuse` ({soak.get('date', '')}, {soak['cpus']} cores, load "
        f"average at the end {load}): `{soak['node']}`. Honest clients send "
        f"{soak['honest']['rate_per_s']:g} requests/s on a fixed schedule (latency counts from "
        "the scheduled start) and one transfer every "
        f"{soak['honest']['transfer_every_s']:g} s; {seconds['baseline']:g} s alone, then "
        f"{seconds['abuse']:g} s beside the abusers, then {seconds['recovery']:g} s alone again.",
        "",
        "| honest side | baseline | under abuse | after |",
        "|---|---:|---:|---:|",
        row("requests answered", "honest_requests", "{:,}"),
        row("latency p50, ms", "latency_p50_ms"),
        row("latency p99, ms", "latency_p99_ms"),
        row("latency max, ms", "latency_max_ms"),
        *(
            f"| p99 {m}, ms | "
            + " | ".join(str(soak[p].get("p99_ms_by_method", {}).get(m, "n/a")) for p in phases)
            + " |"
            for m in methods
        ),
        row("errors", "honest_errors"),
        row("transfers mined", "transfers_mined"),
        row("transfer to receipt, p50 s", "receipt_p50_s"),
        row("transfer to receipt, max s", "receipt_max_s"),
        row("blocks per minute", "per_minute"),
        row("longest gap between blocks, s", "longest_gap_s"),
        row("node RSS max, MiB", "rss_max_mib"),
        row("node RSS at the end, MiB", "rss_end_mib"),
        *(
            [
                row("full node behind the sequencer, p50 blocks", "follower_lag_p50"),
                row("full node behind the sequencer, max blocks", "follower_lag_max"),
            ]
            if any(soak[p].get("follower_lag_max") is not None for p in phases)
            else []
        ),
        "",
        "The abusers, each a process of its own: `deep-json` (40 KB bodies of escaped quotes "
        "after 600 brackets), `big-json` (1 MiB of brackets at the nesting limit), "
        "`spin-call` (two `eth_call`s at a time looping until 50M gas), `mem-trace` "
        "(`debug_traceCall` with `enableMemory` over 16 KiB of memory), `batch` (100 calls "
        "answering 512 KiB each), `ws-noread` (WebSocket clients asking for 2 MB answers and "
        "never reading), `filters` (`eth_newFilter` nonstop), `ws-conns` (WebSocket "
        "connections held), `bad-peer` (a p2p peer under a new peer id each time it is hung "
        "up on, in turn: flooding the sequencer with sync range requests, gossiping junk "
        "transaction batches and undecodable consensus messages to it, and claiming head "
        "#1,000,000 to the full node while answering its range requests with junk). What "
        "they sent and were answered (count per outcome):",
        "",
        "| abuser: outcome | count |",
        "|---|---:|",
        *(f"| {k} | {v:,} |" for k, v in soak["abusers"].items()),
        "",
    ]
    abuse = soak["abuse"]
    others = [v for m, v in abuse.get("p99_ms_by_method", {}).items() if m != "eth_call"]
    lines += [
        "Reading it: `eth_call` is the one method whose tail suffers. Two calls looping to "
        "`--rpc.evmtimeout` (5 s) keep both call workers of this 2-core machine busy, so an "
        "honest call may wait for one to end, or for two when it was queued behind a loop "
        "that had not yet shown itself slow ([security.md](security.md#what-is-not-bounded-yet)). "
        f"Under abuse the other methods' p99 is at most {max(others, default=0):,.0f} ms, "
        f"{abuse['honest_errors']} honest requests fail, and blocks keep coming "
        f"({abuse['per_minute']} per minute, the longest gap {abuse['longest_gap_s']} s). RSS "
        "at the end holds the log filters the abuser installed (until `--rpc.filter-timeout`, "
        "300 s) and allocator fragmentation. The load average is the whole machine's: other "
        "work running beside the soak shows in every phase, the baseline included.",
        "",
    ]
    if abuse.get("follower_lag_max") is not None:
        lines += [
            "The misbehaving peer: the full node following the sequencer stays at most "
            f"{abuse['follower_lag_max']} block(s) behind it while the peer lies to it; junk "
            "gossip and lies end with the peer hung up on and banned (a third banned id bans "
            "its IP, and later turns are refused at once); sync requests are answered while "
            "they stay within the per-peer budget (20/s after a burst of 100: a node slowed "
            "by other load answers 128-block ranges slower than that, and serves them), past "
            "it they are refused and the peer scored down ([security.md](security.md#p2p-limits)).",
            "",
        ]
    return lines


def _soak_plot(soak: dict[str, Any], path: Path) -> None:
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for name, column, label, style in (
        ("cairn", 2, "Cairn node", "-"),
        ("cairn", 3, "Cairn workers (sender recovery, eth_call)", ":"),
        ("anvil", 2, "Anvil", "-"),
    ):
        rows = soak.get(name, {}).get("samples")
        if rows:
            xs = [r[1] / 1000 for r in rows]
            ax.plot(xs, [r[column] for r in rows], style, color=COLORS[name], label=label)
    warm = soak["transfers"] * soak["warm_up_fraction"] / 1000
    ax.axvspan(0, warm, color="grey", alpha=0.12, label="warm-up")
    ax.set_xlabel("transfers accepted (thousands)")
    ax.set_ylabel("resident memory, MiB")
    ax.set_ylim(bottom=0)
    ax.set_title(
        f"Resident memory under {soak['offered_tx_per_s']:g} transfers/s offered, block time 1 s"
    )
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _soak_section(soak: dict[str, Any] | None, images: Path) -> list[str]:
    """Issue 18: resident memory under a long stream of transfers, Cairn beside Anvil."""
    if not soak:
        return []
    _soak_plot(soak, images / "soak_rss.png")
    env = soak["environment"]
    names = [n for n in ("cairn", "anvil") if n in soak]

    def cell(name: str, key: str, fmt: str = "{}") -> str:
        value = soak[name].get(key)
        return "n/a" if value is None else fmt.format(value)

    def band(name: str, label: str) -> str:
        found = soak[name].get(f"{label}_rss_mib_band")
        return "n/a" if not found else f"{found[0]:g} to {found[1]:g}"

    header = " | ".join(n.capitalize() for n in names)
    lines = [
        "## Memory under a sustained load (soak: `python -m bench.soak`)",
        "",
        f"Run on {env['date']} on {env['cpus']} cores (the client signing and sending runs on "
        f"the same machine). {soak['transfers']:,} pre-signed EIP-1559 transfers from the "
        f"{soak['senders']} dev keys, offered at {soak['offered_tx_per_s']:g}/s over HTTP "
        "`eth_sendRawTransaction` (a JSON-RPC batch every 100 ms), block time 1 s, gas limit "
        "30M; once a second the client asks for the receipt of a transaction sent two seconds "
        "before, so every new block is read, as by a client waiting for its transactions; a "
        "transfer refused because the pool is full is offered again a second later. "
        "Resident memory is sampled every second; the band and slope are taken after the "
        f"warm-up (the first {soak['warm_up_fraction']:.0%} of the transfers).",
        "",
        "![soak](img/soak_rss.png)",
        "",
        f"| figure | {header} |",
        "|---|" + "---:|" * len(names),
        "| transfers accepted | " + " | ".join(cell(n, "accepted", "{:,}") for n in names) + " |",
        '| offered again after "txpool is full" (the node behind) | '
        + " | ".join(cell(n, "offered_again_pool_full", "{:,}") for n in names)
        + " |",
        "| refused for good | " + " | ".join(cell(n, "refused", "{:,}") for n in names) + " |",
        "| accepted per second (offered "
        + f"{soak['offered_tx_per_s']:g}) | "
        + " | ".join(cell(n, "accepted_tx_per_s", "{:,.0f}") for n in names)
        + " |",
        "| node RSS at rest, MiB | " + " | ".join(cell(n, "rss_mib_at_rest") for n in names) + " |",
        "| node RSS after warm-up, min to max MiB | "
        + " | ".join(band(n, "node") for n in names)
        + " |",
        "| node RSS slope after warm-up, MiB per 100,000 transfers | "
        + " | ".join(cell(n, "node_rss_mib_per_100k_tx", "{:+.1f}") for n in names)
        + " |",
        "| node RSS at the end, MiB | "
        + " | ".join(cell(n, "node_rss_mib_final") for n in names)
        + " |",
        "| worker processes' RSS after warm-up, min to max MiB | "
        + " | ".join(band(n, "workers") if n == "cairn" else "n/a" for n in names)
        + " |",
        "",
    ]
    structures = soak.get("cairn", {}).get("structures_mib")
    if structures:
        _, accepted, last = structures[-1]
        lines += [
            f"Cairn's own figures of its bounded structures at {accepted:,} transfers "
            "(`cairn_memory_bytes`, estimated, MiB; limits from the default `--cache 256`, "
            "see [operations.md](operations.md#memory-budget)):",
            "",
            "| " + " | ".join(last) + " |",
            "|" + "---:|" * len(last),
            "| " + " | ".join(f"{v:g}" for v in last.values()) + " |",
            "",
        ]
    failures = [f"- {n}: {soak[n]['failed']}" for n in names if soak[n].get("failed")]
    if failures:
        lines += ["Failed runs (`failed` in latest.json):", "", *failures, ""]
    return lines
