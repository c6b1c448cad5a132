"""``zotpy cluster status``: every member's view of the membership, and whether it is ready.

During a resize (``cluster.members`` changed, replicas reloaded one at a time with SIGHUP) this is
how an operator sees where the roll stands: each member of the file's list (and any member a
replica still names from its previous list) is asked for ``/_zotpy/cluster`` and ``/readyz`` over
the same client the replicas use between themselves (``cluster.tls``). A member whose view is not
the file's is shown with its own fingerprint; ``settled`` says whether a replica has seen every
member agree since its list last changed (until then it holds back writes to repositories it took
over). Exit status 0 when every member answers, is ready and holds the file's view.
"""

from __future__ import annotations

import argparse
import json
from typing import Any

import attrs
from treq.client import HTTPClient
from twisted.internet.defer import DeferredList, ensureDeferred
from twisted.internet.task import react

from zotpy.cli.command import Subcommand, cluster_config
from zotpy.cluster.membership import STATUS_PATH, View
from zotpy.cluster.peers import peer_agent
from zotpy.config import Config
from zotpy.transport.failures import describe_failure

TIMEOUT_SECONDS = 3.0


@attrs.frozen
class MemberState:
    """What one member answered (``problem`` set when it could not be asked)."""

    member: str
    fingerprint: str | None = None
    members: tuple[str, ...] = ()
    settled: bool | None = None
    ready: bool | None = None
    previous: tuple[str, ...] = ()
    problem: str | None = None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["status"], help="status: each member's view and readiness")
    parser.add_argument("-c", "--config", required=True, help="a replica's zot-format JSON config")


def run(arguments: argparse.Namespace) -> int:
    """0 when every member answers, is ready and holds the file's view; 1 otherwise (or without a
    cluster section); 2 for a config that does not read."""
    config = cluster_config(arguments.config, "a single registry has no members to ask")
    if isinstance(config, int):
        return config
    assert config.cluster is not None
    states: list[MemberState] = []

    async def main(reactor: Any) -> None:
        states.extend(await gather(reactor, config))

    try:
        react(main)
    except SystemExit:
        pass
    expected = View(config.cluster.members, config.cluster.hash_key)
    print(report(expected, states))
    healthy = all(s.problem is None and s.ready and s.fingerprint == expected.fingerprint for s in states)
    return 0 if healthy and states else 1


async def gather(reactor: Any, config: Config) -> list[MemberState]:
    """Ask every member of the file's list, then any member their previous lists still name."""
    assert config.cluster is not None
    agent, pool = peer_agent(reactor, config.cluster.tls)
    client = HTTPClient(agent)
    scheme = "https" if config.http.tls is not None else "http"
    try:
        states = await _ask_all(client, scheme, list(config.cluster.members))
        named = {member for state in states for member in state.previous} - {s.member for s in states}
        if named:
            states += await _ask_all(client, scheme, sorted(named))
        return states
    finally:
        await pool.closeCachedConnections()


async def _ask_all(client: HTTPClient, scheme: str, members: list[str]) -> list[MemberState]:
    results = await DeferredList([ensureDeferred(_ask(client, scheme, member)) for member in members])
    return [result for _, result in results]


async def _ask(client: HTTPClient, scheme: str, member: str) -> MemberState:
    base = f"{scheme}://{member}"
    try:
        response = await client.get(base + STATUS_PATH.decode(), timeout=TIMEOUT_SECONDS)
        body = await response.content()
        if response.code != 200:
            return MemberState(member, problem=f"{STATUS_PATH.decode()} answered {response.code} (not a zotpy member?)")
        status = json.loads(body)
        ready = await client.get(base + "/readyz", timeout=TIMEOUT_SECONDS)
        await ready.content()
    except Exception as error:
        return MemberState(member, problem=f"unreachable: {describe_failure(error)}")
    previous = status.get("previous") or {}
    return MemberState(
        member,
        fingerprint=str(status.get("fingerprint")),
        members=tuple(status.get("members") or ()),
        settled=bool(status.get("settled")),
        ready=ready.code == 200,
        previous=tuple(previous.get("members") or ()) if not status.get("settled") else (),
    )


def report(expected: View, states: list[MemberState]) -> str:
    """The table the command prints."""
    lines = [
        f"config: {len(expected.members)} members, view {expected.fingerprint}",
        f"{'member':<24} {'view':<13} {'ready':<6} {'settled':<8} note",
    ]
    for state in states:
        if state.problem is not None:
            lines.append(f"{state.member:<24} {'-':<13} {'-':<6} {'-':<8} {state.problem}")
            continue
        notes = []
        if state.member not in expected.members:
            notes.append("not in this file's list")
        if state.fingerprint != expected.fingerprint:
            notes.append(f"other view: members {list(state.members)}")
        lines.append(
            f"{state.member:<24} {state.fingerprint or '-':<13} {'yes' if state.ready else 'no':<6} "
            f"{'yes' if state.settled else 'no':<8} {'; '.join(notes)}".rstrip()
        )
    agreeing = sum(1 for s in states if s.fingerprint == expected.fingerprint)
    lines.append(f"{agreeing} of {len(states)} members hold view {expected.fingerprint}")
    return "\n".join(lines)


COMMAND = Subcommand(
    name="cluster",
    summary="each cluster member's membership view and readiness (during a resize: where the roll stands)",
    description="Ask every member of the config's cluster.members (over cluster.tls, as the replicas "
    "talk to each other) for its membership view (a fingerprint of its members list and hashKey), "
    "whether it has seen every member agree since its list last changed, and /readyz. Members still "
    "named by a replica's previous list are asked too.",
    examples=("cluster status -c /etc/zotpy/config.json",),
    add_arguments=add_arguments,
    run=run,
)
