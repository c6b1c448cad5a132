"""From runs to verdicts: each comparison of the issue as a ratio per round and their median, then
the JSON result, a Markdown table and a PNG chart."""

from __future__ import annotations

import json
import os
import textwrap
from typing import Any, Callable

import attrs

from bench.common import RSS_LIMIT_MIB, median

Getter = Callable[[dict[str, Any]], float]

#: The raw S3 load through HAProxy (:meth:`bench.servers.Resources.s3_relay`).
RELAY = "s3-via-haproxy"


def metric(target: str, *path: str) -> Getter:
    def get(round_: dict[str, Any]) -> float:
        value: Any = round_[target]
        for key in path:
            value = value[key]
        return float(value)

    return get


def cpu(target: str) -> Getter:
    """CPU seconds of all of a target's processes over the measurement."""
    return lambda round_: sum(used["cpu_seconds"] for used in round_[target]["processes"].values())


def best_of(*getters: Getter) -> Getter:
    return lambda round_: max(get(round_) for get in getters)


@attrs.frozen
class Comparison:
    """``a`` against ``b`` in every round: ``kind`` ratio (a / b), difference (a - b) or value (a
    alone); ``goal`` (``>=``/``<=``/``<`` and a bound) is the issue's target, if it sets one."""

    measure: str
    a_name: str
    a: Getter
    b_name: str = ""
    b: Getter | None = None
    kind: str = "ratio"
    goal: tuple[str, float] | None = None

    def row(self, run: dict[str, Any]) -> dict[str, Any]:
        rounds = run["rounds"]
        a_values = [self.a(r) for r in rounds]
        b_values = [self.b(r) for r in rounds] if self.b else []
        if self.kind == "ratio":
            per_round = [a / b if b else 0.0 for a, b in zip(a_values, b_values)]
        elif self.kind == "difference":
            per_round = [a - b for a, b in zip(a_values, b_values)]
        else:
            per_round = a_values
        result = median(per_round)
        met = None
        if self.goal is not None:
            op, bound = self.goal
            met = {">=": result >= bound, "<=": result <= bound, "<": result < bound}[op]
        return {
            "scenario": run["scenario"], "storage": run["storage"], "measure": self.measure, "kind": self.kind,
            "a": self.a_name, "a_median": round(median(a_values), 3),
            "b": self.b_name, "b_median": round(median(b_values), 3) if b_values else None,
            "per_round": [round(v, 3) for v in per_round], "median": round(result, 3),
            "goal": f"{self.goal[0]} {self.goal[1]:g}" if self.goal else "", "met": met,
        }


def registry_comparisons(run: dict[str, Any]) -> list[Comparison]:
    """small, large and memory: zotpy against distribution, raw S3 and the null registry."""
    targets = run["targets"]
    z, d = "zotpy", "distribution"
    out: list[Comparison] = []
    if run["scenario"] == "small":
        for phase in ("push", "pull"):
            out.append(Comparison(f"{phase} images/s", z, metric(z, phase, "images_per_s"), d,
                                  metric(d, phase, "images_per_s"), goal=(">=", 1.0)))
    if run["scenario"] in ("large", "memory"):
        goal = (">=", 1.0) if run["scenario"] == "large" else None
        out.append(Comparison("upload MB/s", z, metric(z, "push", "blob_MBps"), d, metric(d, "push", "blob_MBps"),
                              goal=goal))
        out.append(Comparison("download MB/s", z, metric(z, "pull", "blob_MBps"), d, metric(d, "pull", "blob_MBps")))
    if "raw-s3" in targets:
        out.append(Comparison("upload MB/s vs raw S3 PUT", z, metric(z, "push", "blob_MBps"), "raw-s3",
                              metric("raw-s3", "push", "blob_MBps"), goal=(">=", 0.6)))
        out.append(Comparison("download MB/s vs raw S3 GET", z, metric(z, "pull", "blob_MBps"), "raw-s3",
                              metric("raw-s3", "pull", "blob_MBps"), goal=(">=", 0.8)))
        if RELAY in targets:
            # No target: how far zotpy is from the best a relay does here, and what the hop alone costs.
            for phase, verb in (("push", "PUT"), ("pull", "GET")):
                up_or_down = "upload" if phase == "push" else "download"
                out.append(Comparison(f"{up_or_down} MB/s vs raw S3 {verb} through HAProxy", z,
                                      metric(z, phase, "blob_MBps"), RELAY, metric(RELAY, phase, "blob_MBps")))
            for phase, verb in (("push", "PUT"), ("pull", "GET")):
                out.append(Comparison(f"HAProxy's relay: S3 {verb} MB/s through it / straight", RELAY,
                                      metric(RELAY, phase, "blob_MBps"), "raw-s3",
                                      metric("raw-s3", phase, "blob_MBps")))
        if "storage_cpu_seconds" in run["rounds"][0][z]:
            # The same bytes up and down: the rest is what the registry asks of S3 besides them
            # (its HEADs, its layout, and for chunked uploads a server-side copy of every byte).
            for name in (z, d):
                out.append(Comparison(f"S3 server CPU seconds, {name}'s run / raw S3's", name,
                                      metric(name, "storage_cpu_seconds"), "raw-s3",
                                      metric("raw-s3", "storage_cpu_seconds")))
    out.append(Comparison("server CPU seconds (lower is better)", z, cpu(z), d, cpu(d)))
    if run["scenario"] == "memory":
        out.append(Comparison("peak RSS MiB", z, metric(z, "processes", z, "peak_rss_mib"), d,
                              metric(d, "processes", d, "peak_rss_mib")))
        out.append(Comparison("zotpy peak RSS MiB", z, metric(z, "processes", z, "peak_rss_mib"), kind="value",
                              goal=("<", RSS_LIMIT_MIB)))
    if "null" in targets:
        unit = "images_per_s" if run["scenario"] == "small" else "blob_MBps"
        for phase in ("push", "pull"):
            out.append(Comparison(f"client headroom, {phase} (null registry / best server)", "null",
                                  metric("null", phase, unit), "best server",
                                  best_of(metric(z, phase, unit), metric(d, phase, unit)), goal=(">=", 1.0)))
    return out


def _zotpy_against_zotpy(run: dict[str, Any], a: str, b: str, label: str, goal: float) -> list[dict[str, Any]]:
    """Two zotpy setups on the small load (auth on and off, 2 workers and 1): images/s as a ratio, CPU."""
    rows = [
        Comparison(f"{phase} images/s, {label}", a, metric(a, phase, "images_per_s"), b,
                   metric(b, phase, "images_per_s"), goal=(">=", goal)).row(run)
        for phase in ("push", "pull")
    ]
    rows.append(Comparison("server CPU seconds (lower is better)", a, cpu(a), b, cpu(b)).row(run))
    return rows


def comparisons(run: dict[str, Any]) -> list[dict[str, Any]]:
    if run["scenario"] == "raw-s3":
        return [
            Comparison("raw S3 PUT MB/s", "raw-s3", metric("raw-s3", "push", "blob_MBps"), kind="value").row(run),
            Comparison("raw S3 GET MB/s", "raw-s3", metric("raw-s3", "pull", "blob_MBps"), kind="value").row(run),
        ]
    if run["scenario"] == "auth":
        return _zotpy_against_zotpy(run, "zotpy-auth", "zotpy", "htpasswd + accessControl / none", 0.8)
    if run["scenario"] == "shared-reads":
        n, o = "non-owner", "owner"
        return [
            Comparison("pull images/s by digest, non-owner / owner", n, metric(n, "pull", "images_per_s"), o,
                       metric(o, "pull", "images_per_s"), goal=(">=", 0.95)).row(run),
            Comparison("manifest-by-digest GET p50 ms, non-owner - owner", n, metric(n, "manifest_get_ms", "p50"),
                       o, metric(o, "manifest_get_ms", "p50"), kind="difference", goal=("<=", 0.5)).row(run),
            Comparison("blob GET p50 ms (64 KiB), non-owner - owner", n, metric(n, "blob_get_ms", "p50"), o,
                       metric(o, "blob_get_ms", "p50"), kind="difference", goal=("<=", 0.5)).row(run),
            Comparison("large blob MB/s, non-owner / owner", n, metric(n, "blob_MBps"), o, metric(o, "blob_MBps"),
                       goal=(">=", 0.95)).row(run),
        ]
    if run["scenario"] == "redirect":
        r, z = "zotpy-redirect", "zotpy"
        return [
            Comparison("download MB/s, redirectBlobURL vs raw S3 GET", r, metric(r, "pull", "blob_MBps"), "raw-s3",
                       metric("raw-s3", "pull", "blob_MBps"), goal=(">=", 0.95)).row(run),
            Comparison("download MB/s, relayed vs raw S3 GET", z, metric(z, "pull", "blob_MBps"), "raw-s3",
                       metric("raw-s3", "pull", "blob_MBps"), goal=(">=", 0.8)).row(run),
            Comparison("upload MB/s, redirectBlobURL / relayed (no change expected)", r, metric(r, "push", "blob_MBps"),
                       z, metric(z, "push", "blob_MBps")).row(run),
        ]
    if run["scenario"] == "search":
        x1, x3 = "zotpy x1", "zotpy x3"
        return [
            Comparison("GlobalSearch p50 ms, 1 replica", x1, metric(x1, "globalsearch_ms", "p50"), kind="value").row(run),
            Comparison("GlobalSearch p50 ms, fan-out of 3", x3, metric(x3, "globalsearch_ms", "p50"), kind="value").row(run),
            Comparison("GlobalSearch p50, fan-out of 3 / 1 replica", x3, metric(x3, "globalsearch_ms", "p50"), x1,
                       metric(x1, "globalsearch_ms", "p50")).row(run),
        ]
    if run["scenario"] == "workers":
        return _zotpy_against_zotpy(run, "zotpy x2", "zotpy x1", "2 worker processes / 1", 1.4)
    if run["scenario"] == "cluster":
        x3, x1 = "zotpy x3", "zotpy x1"
        rows = [
            Comparison(f"{phase} images/s, 3 replicas vs 1 (HAProxy)", x3, metric(x3, phase, "images_per_s"), x1,
                       metric(x1, phase, "images_per_s")).row(run["scale"])
            for phase in ("push", "pull")
        ]
        rows.append(Comparison("manifest GET p50 ms, non-owner - owner", "non-owner",
                               metric("non-owner", "manifest_get_ms", "p50"), "owner",
                               metric("owner", "manifest_get_ms", "p50"), kind="difference",
                               goal=("<=", 2.0)).row(run["forwarding"]))
        rows.append(Comparison("blob GET MB/s, non-owner / owner", "non-owner", metric("non-owner", "blob_MBps"),
                               "owner", metric("owner", "blob_MBps"), goal=(">=", 0.8)).row(run["forwarding"]))
        for row in rows:
            row["scenario"] = "cluster"
        return rows
    return [comparison.row(run) for comparison in registry_comparisons(run)]


# -- latencies -------------------------------------------------------------------------------------


def latency_rows(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Median over rounds of each target's p50/p95/p99 per operation."""
    runs = [run["scale"], run["forwarding"]] if run["scenario"] == "cluster" else [run]
    rows = []
    for part in runs:
        for target in part["targets"]:
            results = [r[target] for r in part["rounds"]]
            for phase in ("push", "pull", None):
                if phase and phase not in results[0]:
                    continue
                scope = [r[phase] for r in results] if phase else results
                for key in sorted(scope[0]):
                    if key.endswith("_ms") and isinstance(scope[0][key], dict):
                        rows.append({
                            "scenario": run["scenario"], "storage": run["storage"], "target": target,
                            "operation": key[:-3],
                            **{p: round(median(s[key][p] for s in scope), 2) for p in ("p50", "p95", "p99")},
                            "n": scope[0][key]["n"],
                        })
    return rows


# -- output ----------------------------------------------------------------------------------------


def _number(value: float | None) -> str:
    if value is None:
        return ""
    return f"{value:.3g}" if abs(value) < 100 else f"{value:.0f}"


def markdown(result: dict[str, Any]) -> str:
    lines = [
        "| scenario | storage | measure | A | A (median) | B | B (median) | per round | median | target | met |",
        "| --- | --- | --- | --- | ---: | --- | ---: | --- | ---: | --- | --- |",
    ]
    for row in result["comparisons"]:
        met = {True: "yes", False: "**no**", None: ""}[row["met"]]
        per_round = " ".join(_number(v) for v in row["per_round"])
        lines.append(
            f"| {row['scenario']} | {row['storage']} | {row['measure']} | {row['a']} | {_number(row['a_median'])} "
            f"| {row['b']} | {_number(row['b_median'])} | {per_round} | **{_number(row['median'])}** "
            f"| {row['goal']} | {met} |"
        )
    lines += [
        "",
        "Latencies in ms (median over rounds of each round's percentile):",
        "",
        "| scenario | storage | target | operation | n | p50 | p95 | p99 |",
        "| --- | --- | --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for row in result["latencies"]:
        lines.append(
            f"| {row['scenario']} | {row['storage']} | {row['target']} | {row['operation']} | {row['n']} "
            f"| {row['p50']:.2f} | {row['p95']:.2f} | {row['p99']:.2f} |"
        )
    return "\n".join(lines) + "\n"


def chart(result: dict[str, Any], path: str) -> None:
    """Ratios (median bar, each round a dot, the target a red mark), and peak RSS when measured."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # client headroom (often 10x and more) stays in the table: here it would squash the scale
    ratios = [row for row in result["comparisons"] if row["kind"] == "ratio" and "headroom" not in row["measure"]]
    memory = [row for row in result["comparisons"] if row["measure"] == "peak RSS MiB"]
    panels = 2 if memory else 1
    height = max(3.0, 0.42 * len(ratios) + 1.2)
    figure, axes = plt.subplots(1, panels, figsize=(13 if memory else 10, height), squeeze=False,
                                gridspec_kw={"width_ratios": [3, 1] if memory else [1]})
    axis = axes[0][0]
    labels = [textwrap.fill(f"{r['scenario']}/{r['storage']}: {r['measure']}", 40) for r in ratios]
    positions = list(range(len(ratios)))[::-1]
    colours = ["tab:green" if r["met"] else "tab:red" if r["met"] is False else "tab:gray" for r in ratios]
    axis.barh(positions, [r["median"] for r in ratios], color=colours, alpha=0.6)
    for y, row in zip(positions, ratios):
        axis.plot(row["per_round"], [y] * len(row["per_round"]), "k.", markersize=4)
        if row["goal"]:
            bound = float(row["goal"].split()[1])
            axis.plot([bound, bound], [y - 0.4, y + 0.4], color="red", linewidth=2)
    axis.axvline(1.0, color="black", linewidth=0.6)
    axis.set_xlim(0, min(4.0, 1.1 * max([v for r in ratios for v in r["per_round"]] + [1.2])))
    axis.set_yticks(positions)
    axis.set_yticklabels(labels, fontsize=7)
    axis.set_xlabel("ratio (median bar; dots: rounds; red: target)")
    axis.set_title("zotpy vs peers, alternating rounds")
    if memory:
        axis = axes[0][1]
        names, values = [], []
        for row in memory:
            names += [f"{row['a']}\n{row['storage']}", f"{row['b']}\n{row['storage']}"]
            values += [row["a_median"], row["b_median"]]
        axis.bar(range(len(values)), values, color=["tab:blue", "tab:orange"] * len(memory))
        axis.axhline(RSS_LIMIT_MIB, color="red", linewidth=1)
        axis.set_xticks(range(len(values)))
        axis.set_xticklabels(names, fontsize=7)
        axis.set_ylabel("MiB")
        axis.set_title("peak RSS, 1 GiB blob\npush + pull")
    figure.tight_layout()
    figure.savefig(path, dpi=90, bbox_inches="tight")  # long labels stay whole
    plt.close(figure)


def write(result: dict[str, Any], directory: str) -> dict[str, str]:
    """Write ``result.json``, ``result.md`` and ``result.png`` into ``directory``; their paths."""
    os.makedirs(directory, exist_ok=True)
    result["comparisons"] = [row for run in result["runs"] for row in comparisons(run)]
    result["latencies"] = [row for run in result["runs"] for row in latency_rows(run)]
    paths = {kind: os.path.join(directory, f"result.{kind}") for kind in ("json", "md", "png")}
    with open(paths["json"], "w") as stream:
        json.dump(result, stream, indent=1)
    with open(paths["md"], "w") as stream:
        stream.write(markdown(result))
    chart(result, paths["png"])
    return paths
