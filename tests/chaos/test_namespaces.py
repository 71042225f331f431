"""Workers on many hosts (issue 18 part 2): three network namespaces, each a "host" joined to the
root namespace by a veth pair on a private 10.200.X.0/24 that exists only on this machine, run one
real `pgjobs worker` each against a PostgreSQL in the root namespace listening on the veth
addresses. One host's link goes down mid-drain; the other two must finish its work, every job
exactly once, after its leases expire. Needs root and `ip netns` (CI runs as root); namespaces and
veths are removed afterwards, also on failure.
"""

from __future__ import annotations

import os
import random
import shutil
import subprocess
import time
import uuid
from dataclasses import dataclass
from typing import Iterator

import pytest

from chaoskit.cluster import Cluster
from chaoskit.workload import Template, WorkerProc, wait_until, worker_env

pytestmark = pytest.mark.slow


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=15)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def _unavailable() -> str | None:
    if os.geteuid() != 0:
        return "creating network namespaces needs root (CI runs the suite as root)"
    if shutil.which("ip") is None:
        return "the `ip` command (iproute2) is not installed"
    probe = f"pgjc-probe-{uuid.uuid4().hex[:6]}"
    done = _ip("netns", "add", probe, check=False)
    if done.returncode != 0:
        return f"`ip netns add` is not permitted here: {done.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


@dataclass
class Host:
    netns: str
    link: str  # the root namespace's end of the veth pair: `ip link set LINK down` cuts the host off
    server_ip: str  # PostgreSQL's address on this host's link
    network: str


@pytest.fixture
def hosts() -> Iterator[list[Host]]:
    reason = _unavailable()
    if reason:
        pytest.skip(reason)
    used = _ip("-o", "addr").stdout
    free = [x for x in range(1, 255) if f"10.200.{x}." not in used]
    tag = uuid.uuid4().hex[:4]  # unique names: several checkouts may run this test at once
    made: list[Host] = []
    try:
        for i, x in enumerate(random.sample(free, 3), 1):
            host = Host(f"pgjc{tag}h{i}", f"pgjc{tag}r{i}", f"10.200.{x}.1", f"10.200.{x}.0/24")
            peer = f"pgjc{tag}n{i}"
            _ip("netns", "add", host.netns)
            made.append(host)
            _ip("link", "add", host.link, "type", "veth", "peer", "name", peer)
            _ip("link", "set", peer, "netns", host.netns)
            _ip("addr", "add", f"{host.server_ip}/24", "dev", host.link)
            _ip("link", "set", host.link, "up")
            for args in (("addr", "add", f"10.200.{x}.2/24", "dev", peer), ("link", "set", peer, "up"),
                         ("link", "set", "lo", "up")):
                _ip("netns", "exec", host.netns, "ip", *args)
        yield made
    finally:
        for host in made:
            _ip("link", "del", host.link, check=False)  # takes its peer with it
            _ip("netns", "del", host.netns, check=False)


def test_two_hosts_finish_the_work_of_a_third_cut_off_mid_drain(hosts, tmp_path):
    n = 450
    with Cluster(listen=("127.0.0.1", *(h.server_ip for h in hosts)),
                 hba_networks=tuple(h.network for h in hosts)) as cluster:
        db = Template(cluster.dsn(), cluster.dsn).fresh("netns")
        db.enqueue(n, sleep_ms=200)
        workers = {h.netns: WorkerProc(h.netns, worker_env(cluster.dsn(db.name, host=h.server_ip), h.netns),
                                       tmp_path, prefix=["ip", "netns", "exec", h.netns]) for h in hosts}
        try:
            def mid() -> bool:
                done = dict(db.q("SELECT worker, count(*) FROM chaos_effects GROUP BY 1"))
                return sum(done.values()) >= n // 5 and all(done.get(h.netns) for h in hosts)
            assert wait_until(mid, 40), "the three hosts never all got going:\n" + \
                "\n".join(w.tail() for w in workers.values())
            cut = hosts[0]
            ((cut_id,),) = db.q("SELECT worker_id FROM pgjobs.workers WHERE pid = %s", (workers[cut.netns].pid,))

            def just_claimed() -> bool:
                # Jobs the host claimed in the last 100 ms (200 ms each) cannot finish before the cut:
                # cut at any moment, it could fall between its group commit and its next claim.
                return db.q("SELECT count(*) FROM pgjobs.jobs_live WHERE worker_id = %s AND state = 'running' "
                            "AND attempted_at > now() - interval '100 milliseconds'", (cut_id,))[0][0] > 0
            assert wait_until(just_claimed, 10, every=0.01), "the host to cut off never held a fresh claim"
            _ip("link", "set", cut.link, "down")
            struck = time.time()

            def states() -> dict[str, int]:
                return dict(db.q("SELECT state::text, count(*) FROM pgjobs.jobs GROUP BY 1"))
            assert wait_until(lambda: states() == {"succeeded": n}, 45), states()

            (with_effect, dupes), = db.q("SELECT count(*), count(*) FILTER (WHERE c > 1) FROM "
                                         "(SELECT job_id, count(*) c FROM chaos_effects GROUP BY 1) e")
            assert (with_effect, dupes) == (n, 0)
            # The jobs the cut host held (claimed just before the cut) were rescued once their leases
            # expired, and finished by the other two hosts.
            rescued = db.q("SELECT e.worker FROM pgjobs.jobs j JOIN chaos_effects e ON e.job_id = j.id "
                           "WHERE j.errors @> jsonb_build_array(jsonb_build_object("
                           "'outcome', 'lease_expired', 'worker', %s::text))", (cut_id,))
            assert rescued and {w for (w,) in rescued} <= {h.netns for h in hosts[1:]}, rescued
            late = db.q("SELECT count(*) FROM chaos_effects WHERE worker = %s AND at > to_timestamp(%s)",
                        (cut.netns, struck + 1))[0][0]
            assert late == 0, "the cut-off host still completed jobs"
        finally:
            for host, proc in zip(hosts, workers.values()):
                proc.stop(timeout=3 if host is hosts[0] else 8)
