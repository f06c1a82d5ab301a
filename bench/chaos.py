"""The chaos suite: the real stack under one fault scenario, checked the Jepsen way.

Drive a workload (a sandbox scenario of N orders), inject faults (kill workers, wipe Redis, break
the network...), record every effect (the sandbox's ledger) and check the history against the
rules (its report's ``violations``). One line per run:

    kill-workers seed=3 events=1203 effects=2841 lost=0 duplicated=0 forbidden=0 drain=97.4s

``lost``: orders not at the end their events call for, plus feed events never committed;
``duplicated``: effects applied twice; ``forbidden``: every other broken rule (a cancel of a
shipped order, a release of a contested one, an order stuck past its deadline...). Exit status 1
on any of them or on a missed deadline, 2 when the run could not start.

    python bench/chaos.py --scenario kill-workers --seed 3 --orders 500
    python bench/chaos.py --scenario all --seeds 1,2,3 --orders 500 --json report.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from workers.stack import Stack, StackConfig, pool_children

Monkey = Callable[["Chaos", float], None]


@dataclass
class Chaos:
    """What the monkeys act on, and their log."""

    stack: Stack
    rng: random.Random
    proxy: Any = None
    log: list[str] = field(default_factory=list)
    paused: dict[int, float] = field(default_factory=dict)  # process group -> resume time
    state: dict[str, Any] = field(default_factory=dict)

    def note(self, what: str) -> None:
        self.log.append(f"{time.strftime('%H:%M:%S')} {what}")

    def every(self, key: str, seconds: float, now: float) -> bool:
        """True once per ``seconds`` for ``key`` (with jitter), starting after one period."""
        due = self.state.setdefault(key, now + seconds * self.rng.uniform(0.5, 1.5))
        if now < due:
            return False
        self.state[key] = now + seconds * self.rng.uniform(0.5, 1.5)
        return True


# -- the monkeys ------------------------------------------------------------------------------


def kill_workers(every: float) -> Monkey:
    def act(chaos: Chaos, now: float) -> None:
        workers = chaos.stack.workers()
        if workers and chaos.every("kill-workers", every, now):
            victim = chaos.rng.choice(workers)
            os.killpg(victim.proc.pid, signal.SIGKILL)
            chaos.note(f"SIGKILL {victim.name} (pid {victim.proc.pid} and its pool)")

    return act


def kill_children(every: float) -> Monkey:
    def act(chaos: Chaos, now: float) -> None:
        if not chaos.every("kill-children", every, now):
            return
        children = [p for w in chaos.stack.workers() for p in pool_children(w.proc.pid)]
        if children:
            victim = chaos.rng.choice(children)
            try:
                os.kill(victim, signal.SIGKILL)
                chaos.note(f"SIGKILL pool child {victim}")
            except ProcessLookupError:
                pass

    return act


def pause_worker(every: float, pause: float) -> Monkey:
    def act(chaos: Chaos, now: float) -> None:
        for group, until in list(chaos.paused.items()):
            if now >= until:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(group, signal.SIGCONT)
                del chaos.paused[group]
                chaos.note(f"SIGCONT worker group {group}")
        workers = [w for w in chaos.stack.workers() if w.proc.pid not in chaos.paused]
        if workers and not chaos.paused and chaos.every("pause-worker", every, now):
            victim = chaos.rng.choice(workers)
            os.killpg(victim.proc.pid, signal.SIGSTOP)
            chaos.paused[victim.proc.pid] = now + pause
            chaos.note(f"SIGSTOP {victim.name} for {pause:.0f}s (longer than the lock TTL)")

    return act


def restart_redis(every: float, wipe: bool) -> Monkey:
    def act(chaos: Chaos, now: float) -> None:
        redis = chaos.stack.redis
        if redis is None or not chaos.every("redis", every, now):
            return
        if wipe:
            redis.kill()
            redis.restart(wipe=True)
            chaos.note("Redis killed and started empty: queues, locks, ledger gone")
        else:
            redis.restart()
            chaos.note("Redis restarted with its data")

    return act


def break_network(every: float) -> Monkey:
    modes = ("latency", "blackhole", "reset", "pass")

    def act(chaos: Chaos, now: float) -> None:
        proxy = chaos.proxy
        if proxy is None or not chaos.every("network", every, now):
            return
        mode = chaos.rng.choice(modes)
        if mode == "latency":
            proxy.latency(chaos.rng.uniform(0.02, 0.2), 0.02)
        elif mode == "blackhole":
            proxy.blackhole()
            chaos.state["network-heal"] = now + chaos.rng.uniform(1.0, 4.0)
        elif mode == "reset":
            proxy.reset_all()
        else:
            proxy.pass_through()
        chaos.note(f"network: {mode}")

    def heal(chaos: Chaos, now: float) -> None:
        act(chaos, now)
        heal_at = chaos.state.get("network-heal")
        if chaos.proxy is not None and heal_at is not None and now >= heal_at:
            chaos.proxy.pass_through()
            chaos.state.pop("network-heal")
            chaos.note("network: healed")

    return heal


def poison(seconds: float = 12.0, limit: float = 240.0) -> Monkey:
    """Poison work: one order's Get order is made slow, and every run on it is killed while it
    runs (found with Celery's inspect), until a run reaches quarantine after the redelivery
    limit instead of looping. Then the poison stops (the sandbox counts the order's deadlines
    from then) and the order's other work finishes it. A poison not quarantined within
    ``limit`` seconds fails the run."""

    def set_slow(stack: Stack, order_id: str, delay: float, duration: float) -> bool:
        answer = stack.http.post(
            f"{stack.banner['vtex_url']}/_sandbox/orders/{order_id}/slow",
            json={"seconds": delay, "for": duration},
            headers=stack.vtex_headers,
            timeout=5,
        )
        return answer.status_code == 200

    def act(chaos: Chaos, now: float) -> None:
        stack = chaos.stack
        state = chaos.state
        if "poison" not in state:
            from sandbox.scenario import order_id_for

            order_id, _ = order_id_for(stack.config.seed, 1)
            if not set_slow(stack, order_id, seconds, limit):
                return  # not created yet: try again on the next tick
            state["poison"] = order_id
            state["poison-kills"] = 0
            state["poison-until"] = now + limit
            state["expect-poison"] = "pending"
            chaos.note(f"poison: Get order of {order_id} answers {seconds:.0f}s late")
        if state["expect-poison"] != "pending" or not chaos.every("poison-scan", 0.5, now):
            return
        order_id = state["poison"]
        if quarantined_for(stack, order_id):
            end = "quarantined"
        elif now >= state["poison-until"]:
            end = "not quarantined"
        else:
            end = ""
        if end:
            set_slow(stack, order_id, 0, 0)  # the poison stops: deadlines count from now
            state["expect-poison"] = end
            chaos.note(f"poison: {order_id} {end} after {state['poison-kills']} kills")
            return
        for pid in active_pids(chaos, order_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                state["poison-kills"] += 1
                chaos.note(f"poison: SIGKILL pool child {pid} running {order_id}")

    return act


def active_pids(chaos: Chaos, order_id: str) -> list[int]:
    """Pool processes running work for ``order_id`` now, as the workers report them."""
    from celery import Celery

    app = chaos.state.get("control-app")
    if app is None:
        app = Celery(broker=chaos.stack.redis_url)
        chaos.state["control-app"] = app
    active = app.control.inspect(timeout=0.5).active() or {}
    return [
        int(task["worker_pid"])
        for tasks in active.values()
        for task in tasks
        if order_id in str(task.get("args")) and task.get("worker_pid")
    ]


def quarantined_for(stack: Stack, order_id: str) -> bool:
    import redis as redis_client

    from bridge.state.quarantine import Quarantine

    client = redis_client.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        prefix = stack.env.get("KEY_PREFIX", "vtexbridge:")
        return any(i.order_id == order_id for i in Quarantine(client, prefix).list(200))
    except redis_client.RedisError:
        return False
    finally:
        client.close()


# -- the scenarios ----------------------------------------------------------------------------

# While processes die or Redis is away, recovery takes one reconnection, a pending run's expiry
# (PENDING_TTL) and a sweep: these scenarios give orders a two-hour handling deadline (60 s at
# 120x) instead of one hour.
RECOVERY = {"ready_deadline": 7200.0}
API_FAULTS = "vtex:429=4%,500=3%,drop=2%,retry-after=1;erp:500=3%,drop=2%"
SLOW_WORK_FAULTS = "erp_import:latency=5000ms,jitter=1000ms;erp_release:latency=5000ms"
SLOW_WORK_ENV = {"BROKER_VISIBILITY_TIMEOUT": "3", "TASK_TIME_LIMIT": "60"}


@dataclass(frozen=True)
class Scenario:
    name: str
    about: str
    monkeys: tuple[Monkey, ...] = ()
    config: dict[str, Any] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    supervise: bool = False
    proxy: bool = False
    rate_limited: bool = False  # 429s or slow calls cap the bridge's pace
    deadline: float = 600.0

    def time_scale(self, orders: int) -> float:
        """The store clock's speed. A 429 stops every worker for its Retry-After, so under
        rate limits the bridge does about 20 VTEX calls a second: the clock slows with the
        scenario's size to keep its deadlines (an hour in ready-for-handling) meaningful."""
        if not self.rate_limited:
            return 120.0
        return max(12.0, min(120.0, 8000.0 / max(orders, 1)))


SCENARIOS: dict[str, Scenario] = {
    s.name: s
    for s in (
        Scenario(
            "duplicates",
            "heavy duplicate and reordered delivery",
            config={
                "duplicates": 0.6,
                "partial": 0.3,
                "shuffle_window": 80,
            },
        ),
        Scenario(
            "kill-workers",
            "SIGKILL a random worker every few seconds; restarted",
            monkeys=(kill_workers(6.0),),
            config=RECOVERY,
            supervise=True,
        ),
        Scenario(
            "kill-children",
            "SIGKILL pool children mid-task; poison work to quarantine",
            monkeys=(kill_children(1.5), poison()),
            config=RECOVERY,
            env={"REDELIVERY_LIMIT": "2"},
            # A pool child killed while the pool starts takes its worker down: restart it.
            supervise=True,
        ),
        Scenario(
            "pause-worker",
            "SIGSTOP a worker longer than the lock TTL, then SIGCONT",
            monkeys=(pause_worker(10.0, 8.0),),
            config=RECOVERY,
            env={"LOCK_TTL": "3"},
        ),
        Scenario(
            "redis-restart",
            "restart Redis (persistence on) mid-run",
            monkeys=(restart_redis(25.0, wipe=False),),
            config={**RECOVERY, "persistence": True},
        ),
        Scenario(
            "redis-wipe",
            "kill Redis without persistence and start it empty mid-run",
            monkeys=(restart_redis(30.0, wipe=True),),
            config=RECOVERY,
        ),
        Scenario(
            "api-faults",
            "429s, 500s and answers lost after the effect, VTEX and ERP",
            config={"faults": API_FAULTS},
            rate_limited=True,
            deadline=1200.0,
        ),
        Scenario(
            "network",
            "latency, black holes and resets between workers and Redis",
            monkeys=(break_network(4.0),),
            config=RECOVERY,
            proxy=True,
        ),
        Scenario("two-beats", "two beat processes from the start", config={"beats": 2}),
        Scenario(
            "slow-work",
            "work that outlasts the Redis visibility timeout",
            config={"faults": SLOW_WORK_FAULTS},
            env=SLOW_WORK_ENV,
            rate_limited=True,
            deadline=1200.0,
        ),
        Scenario(
            "everything",
            "all of the above at once, longer",
            monkeys=(
                kill_workers(15.0),
                kill_children(4.0),
                pause_worker(20.0, 8.0),
                restart_redis(40.0, wipe=False),
                break_network(8.0),
            ),
            config={
                **RECOVERY,
                "duplicates": 0.4,
                "partial": 0.2,
                "shuffle_window": 60,
                "beats": 2,
                "persistence": True,
                "faults": API_FAULTS,
            },
            env={"LOCK_TTL": "3"},
            supervise=True,
            proxy=True,
            rate_limited=True,
            deadline=1800.0,
        ),
    )
}
OBSERVE_AFTER = 5.0  # seconds of watching after the faults stop
CI_SCENARIOS = ("duplicates", "kill-workers", "redis-wipe", "api-faults")

# Effects the bridge causes (the ERP's own progress, picking/packing/dispatch, is not one).
BRIDGE_EFFECTS = ("vtex.", "erp.import", "erp.cancel", "erp.hold", "erp.release", "erp.invoice")


@dataclass
class Result:
    scenario: str
    seed: int
    orders: int
    settled: bool
    drain: float
    report: dict[str, Any]
    chaos: list[str]
    quarantined: int = 0
    poison: str | None = None  # the poison's end: "quarantined" is what a scenario with one needs

    @property
    def lost(self) -> int:
        ev = self.report["events"]
        return int(self.report["orders"]["unfinished"] + ev["waiting"] + ev["in_flight"])

    @property
    def duplicated(self) -> int:
        return sum(1 for v in self.report["violations"] if v["rule"] == "effect-repeated")

    @property
    def forbidden(self) -> int:
        return sum(1 for v in self.report["violations"] if v["rule"] != "effect-repeated")

    @property
    def effects(self) -> int:
        return sum(v for k, v in self.report["effects"].items() if k.startswith(BRIDGE_EFFECTS))

    @property
    def ok(self) -> bool:
        poison_ok = self.poison in (None, "quarantined")
        return self.settled and not self.report["violations"] and poison_ok

    def line(self) -> str:
        drain = f"{self.drain:.1f}s" if self.settled else f"missed({self.drain:.0f}s)"
        return (
            f"{self.scenario} seed={self.seed} orders={self.orders} "
            f"events={self.report['events']['emitted']} effects={self.effects} "
            f"lost={self.lost} duplicated={self.duplicated} forbidden={self.forbidden} "
            f"drain={drain} chaos={len(self.chaos)} quarantined={self.quarantined}"
            + (f" poison={self.poison.replace(' ', '-')}" if self.poison else "")
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario,
            "seed": self.seed,
            "orders": self.orders,
            "settled": self.settled,
            "drain_seconds": round(self.drain, 1),
            "lost": self.lost,
            "duplicated": self.duplicated,
            "forbidden": self.forbidden,
            "effects": self.effects,
            "quarantined": self.quarantined,
            "poison": self.poison,
            "chaos": self.chaos,
            "report": self.report,
        }


def quarantine_count(stack: Stack) -> int:
    import redis as redis_client

    from bridge.state.quarantine import Quarantine

    prefix = stack.env.get("KEY_PREFIX", "vtexbridge:")
    client = redis_client.Redis.from_url(stack.redis_url, decode_responses=True)
    try:
        return Quarantine(client, prefix).count()
    except redis_client.RedisError:
        return -1
    finally:
        client.close()


def run(scenario: Scenario, seed: int, orders: int, *, progress: bool = False) -> Result:
    rng = random.Random(seed)
    config = StackConfig(
        orders=orders,
        seed=seed,
        workers=2,
        concurrency=4,
        time_scale=scenario.time_scale(orders),
        flower=False,
        extra_env=dict(scenario.env),
        **scenario.config,
    )
    stack = Stack(config)
    chaos = Chaos(stack, rng)
    started = time.monotonic()
    try:
        stack.start_redis()
        if scenario.proxy:
            from bench.chaosnet import ChaosProxy

            host, port = stack.redis_url.split("//")[1].split("/")[0].split(":")
            chaos.proxy = ChaosProxy((host, int(port))).__enter__()
            stack.worker_redis_url = chaos.proxy.url_for(stack.redis_url)
        stack.start()
        report = stack.report()
        last_print = 0.0
        while time.monotonic() - started < scenario.deadline:
            now = time.monotonic() - started
            if report["settled"]:
                break
            for monkey in scenario.monkeys:
                monkey(chaos, now)
            if scenario.supervise:
                for name in stack.supervise():
                    chaos.note(f"supervisor restarted {name}")
            if progress and now - last_print > 10:
                last_print = now
                ev = report["events"]
                print(
                    f"  [{now:5.0f}s] {report['orders']['by_status']} "
                    f"committed {ev['committed']} waiting {ev['waiting'] + ev['in_flight']} "
                    f"violations {len(report['violations'])}",
                    flush=True,
                )
            time.sleep(0.5)  # the monkeys' tick, not a synchronisation
            report = stack.report()
        # Faults stop here: resume anything paused, heal the network, and let it drain.
        for group in list(chaos.paused):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(group, signal.SIGCONT)
        chaos.paused.clear()
        if chaos.proxy is not None:
            chaos.proxy.pass_through()
        drain = time.monotonic() - started
        # Watch a little longer: a worker resumed just now must not do anything twice either.
        watch_until = time.monotonic() + OBSERVE_AFTER
        while time.monotonic() < watch_until:
            time.sleep(0.5)
            report = stack.report()
        settled = bool(report["settled"])
        quarantined = quarantine_count(stack)
    finally:
        stack.stop()
        if chaos.proxy is not None:
            chaos.proxy.stop()
    poison_end = chaos.state.get("expect-poison")
    return Result(
        scenario.name, seed, orders, settled, drain, report, chaos.log, quarantined, poison_end
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--scenario",
        required=True,
        help=f"one of {', '.join(SCENARIOS)}; 'all'; or 'ci' ({', '.join(CI_SCENARIOS)})",
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--seeds", help="comma-separated seeds, one run each (overrides --seed)")
    parser.add_argument("--orders", type=int, default=500)
    parser.add_argument("--deadline", type=float, help="seconds per run (default per scenario)")
    parser.add_argument("--json", metavar="FILE", help="write every run's whole report here")
    parser.add_argument("--progress", action="store_true", help="print progress every 10 s")
    args = parser.parse_args(argv)
    if args.scenario == "all":
        names = list(SCENARIOS)
    elif args.scenario == "ci":
        names = list(CI_SCENARIOS)
    else:
        names = [n.strip() for n in args.scenario.split(",")]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown:
        print(f"chaos: unknown scenario {unknown}; choose from {list(SCENARIOS)}", file=sys.stderr)
        return 2
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    results = []
    for name in names:
        scenario = SCENARIOS[name]
        if args.deadline:
            scenario = Scenario(**{**scenario.__dict__, "deadline": args.deadline})
        for seed in seeds:
            result = run(scenario, seed, args.orders, progress=args.progress)
            results.append(result)
            print(result.line(), flush=True)
            for violation in result.report["violations"][:5]:
                print(f"    {violation['rule']} {violation['orderId']}: {violation['detail']}")
    if args.json:
        Path(args.json).write_text(json.dumps([r.to_json() for r in results], indent=2))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
