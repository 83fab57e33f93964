"""Prometheus figures of a validator's consensus, read from the engine at scrape time:
height, round, step, seconds since the last commit, rounds the last height took, votes
received, proposals made, proposals each validator missed, equivocations seen."""

from __future__ import annotations

import time
from collections.abc import Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from cairn.consensus.bft.engine import BftEngine

STEPS = ("waiting", "propose", "prevote", "precommit", "decided")


class BftCollector(Collector):
    def __init__(self, engine: BftEngine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        status = self._engine.status
        yield GaugeMetricFamily("cairn_bft_height", "height being decided", status.height)
        yield GaugeMetricFamily("cairn_bft_round", "round of the current height", status.round)
        step = GaugeMetricFamily(
            "cairn_bft_step", "current step (1 for the one in)", labels=["step"]
        )
        for name in STEPS:
            step.add_metric([name], 1.0 if status.step == name else 0.0)
        yield step
        if status.last_commit_at is not None:
            yield GaugeMetricFamily(
                "cairn_bft_last_commit_age_seconds",
                "seconds since this validator last saw a height committed",
                max(0.0, time.time() - status.last_commit_at),
            )
        yield GaugeMetricFamily(
            "cairn_bft_rounds_last_height", "rounds the last height took", status.rounds_last_height
        )
        yield GaugeMetricFamily(
            "cairn_bft_validators", "validators in the set", self._engine.validators.size
        )
        yield CounterMetricFamily(
            "cairn_bft_votes_received", "votes received from the network", status.votes_received
        )
        yield CounterMetricFamily(
            "cairn_bft_proposals_made", "proposals this validator made", status.proposals_made
        )
        missed = CounterMetricFamily(
            "cairn_bft_missed_proposals",
            "rounds whose proposer sent no proposal in time, by proposer",
            labels=["validator"],
        )
        for validator, count in sorted(status.missed_proposals.items()):
            missed.add_metric([validator], count)
        yield missed
        yield CounterMetricFamily(
            "cairn_bft_equivocations",
            "conflicting votes seen (evidence kept)",
            status.equivocations,
        )
