"""`JobWorkflow`: one durable execution per job, from quotes to settlement.

The workflow owns the job's state. It collects quotes, picks an offer, holds the budget,
provisions with fail-over, polls the instance on a durable timer, and on every path tears the
instance down and settles the hold: the real cost is captured, the rest released.

This module must stay deterministic: no I/O, no wall clock, no randomness. Changing the order
or kind of commands it issues breaks the replay of jobs already running; such a change needs
`workflow.patched`.
"""

import asyncio
import dataclasses
from datetime import datetime, timedelta
from enum import Enum

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from activities.metrics import record_job_status
    from activities.types import (
        INSUFFICIENT_CREDITS,
        OUT_OF_CAPACITY,
        BudgetRequest,
        InstanceInput,
        InstanceReport,
        JobConfig,
        JobConfigInput,
        ProvisionInput,
        ReleaseInput,
        SettleInput,
    )
    from activities.webhooks import (
        WEBHOOK_REJECTED,
        LowBalanceDelivery,
        WebhookActivities,
        WebhookDelivery,
    )
    from ledger.alerts import LowBalanceNotice
    from ledger.money import micros_to_credits
    from ledger.provider_costs import ProviderCharge
    from providers.base import InstanceState, Offer, ProvisionRequest, QuoteRequest
    from workflows.activity_errors import describe, error_type
    from workflows.quoting import collect_offers
    from workflows.search_attributes import COST_MICROS, JOB_STATUS, PROVIDER
    from workflows.selection import Constraints, Policy, rank_offers
    from workflows.types import (
        FINAL_JOB_STATUSES,
        Attempt,
        CancelRequest,
        Checkpoint,
        InputReady,
        JobEvent,
        JobEventType,
        JobInput,
        JobState,
        JobStatus,
        Segment,
    )

CONFIG_TIMEOUT = timedelta(seconds=10)

PROVISION_TIMEOUT = timedelta(minutes=2)
# Transient launch errors get a few tries at one offer; after that the next offer is tried.
PROVISION_RETRY = RetryPolicy(maximum_attempts=4, maximum_interval=timedelta(seconds=30))

STATUS_TIMEOUT = timedelta(seconds=30)
LEDGER_TIMEOUT = timedelta(seconds=30)
TERMINATE_TIMEOUT = timedelta(minutes=2)
# Unlimited attempts, because teardown and settlement must finish for the job to be correct:
# an instance left running keeps costing money, and a hold left open locks the tenant's credits.
UNTIL_DONE_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=1))

WEBHOOK_TIMEOUT = timedelta(seconds=30)
# A receiver that is down is retried with backoff for up to a day. After that the event is
# logged as undelivered and the next one is sent.
WEBHOOK_RETRY = RetryPolicy(maximum_interval=timedelta(minutes=5))
WEBHOOK_DEADLINE = timedelta(days=1)

SEARCH_ATTRIBUTES_PATCH = "search-attributes"
CONTINUE_AS_NEW_PATCH = "continue-as-new"
SHIELDED_CLOSE_PATCH = "shielded-close"
"""Patch id of finishing teardown and settlement when a Temporal cancel arrives meanwhile."""
SHIELDED_HOLD_PATCH = "shielded-hold"
"""Patch id of waiting for the hold's outcome when a Temporal cancel arrives meanwhile."""
RELEASE_ATTEMPT_PATCH = "release-failed-attempt"
"""Patch id of tearing down what a failed launch created, which older jobs never do."""
"""Patch id of continuing as new, which jobs started before it never do."""
"""Patch id of the search attribute updates, which jobs started before them do not make."""


class _ContinueAsNew(Exception):
    """Raised inside monitoring to continue the job as a new run with its state."""


class _InstanceEnd(Enum):
    """Reason that monitoring of one instance stopped."""

    JOB_DONE = "job done"
    """The job reached a final status (or is about to, after teardown)."""

    PREEMPTED = "preempted"
    NOT_READY = "not ready"


@workflow.defn
class JobWorkflow:
    """Runs one job; the workflow id is the job id."""

    @workflow.init
    def __init__(self, input: JobInput) -> None:
        self._input = input
        self._state = JobState(
            job_id=input.job_id,
            tenant_id=input.tenant_id,
            submitted_at=input.submitted_at,
        )
        self._cancel_reason: str | None = None
        self._offer: Offer | None = None
        self._instance_live = False
        self._attempt_number = 0
        self._closed_cost_micros = 0
        """Cost of the segments whose instances are already torn down."""
        self._last_billable_seconds = 0
        """Billable seconds of the current instance at its last status check."""
        self._delivered_events = 0
        """Number of events in the timeline that the webhook loop has handled."""
        self._closing = False
        self._input_ready = False
        self._outcome: tuple[JobStatus, str] | None = None
        """Final status and reason, decided by `_finish`; the job shows it only once its
        instance is torn down and its hold settled."""
        self._config: JobConfig | None = None
        self._preemptions = 0
        self._lost: list[Offer] = []
        """Offers whose instances were preempted or never ready; never tried again."""
        self._monitor_started_at = workflow.now()
        """Start of monitoring of the current instance: its readiness clock."""
        self._listed_before = False
        """Whether the provider has listed the current instance."""
        self._notices: list[asyncio.Task] = []
        """Deliveries of low-balance notices, awaited before the workflow completes."""
        self._pending_notices: list[LowBalanceNotice] = []
        """Low-balance notices not yet delivered; a new run after continue-as-new sends them."""

    @workflow.run
    async def run(self, input: JobInput) -> JobState:
        """Run the job to a final status and return its final state."""
        if input.checkpoint is not None:
            self._restore(input.checkpoint)
        else:
            self._event(JobEventType.STATUS, "the job was submitted")
        deliveries = None
        if input.callback_url:
            deliveries = asyncio.create_task(self._deliver_webhooks(input.callback_url))

        try:
            if input.checkpoint is not None:
                await self._run_placed()
            else:
                await self._place_and_run()
        except _ContinueAsNew:
            workflow.logger.info(
                "job %s continues as new after %d history events",
                self._input.job_id,
                workflow.info().get_current_history_length(),
            )
            workflow.continue_as_new(dataclasses.replace(input, checkpoint=self._checkpoint()))
        except asyncio.CancelledError:
            # A Temporal cancel request. Clean up as for a cancel signal, then complete
            # normally, so the final state and its settlement stay readable in the result.
            self._finish(JobStatus.CANCELLED, self._cancel_reason or "cancelled through Temporal")

        if not workflow.patched(SHIELDED_CLOSE_PATCH):
            await self._close_out(deliveries)
            return self._state
        closing = asyncio.create_task(self._close_out(deliveries))
        while True:
            try:
                # Shielded: a Temporal cancel during teardown or settlement must not leave the
                # instance running or the hold open, so closing out always runs to its end.
                await asyncio.shield(closing)
                return self._state
            except asyncio.CancelledError:
                self._finish(
                    JobStatus.CANCELLED, self._cancel_reason or "cancelled through Temporal"
                )

    async def _close_out(self, deliveries: asyncio.Task | None) -> None:
        """Tear the instance down, settle the hold, show the final status, and wait for the
        webhook and low-balance deliveries."""
        await self._tear_down()
        await self._settle()
        self._complete()

        self._closing = True
        if deliveries is not None:
            await deliveries
        for notice in self._notices:
            await notice

    @workflow.query
    def state(self) -> JobState:
        """Return the job's live state."""
        return self._state

    @workflow.signal
    def input_ready(self, _: InputReady) -> None:
        """Let a job that waits for its input go on to placement."""
        self._input_ready = True

    @workflow.signal
    def cancel(self, request: CancelRequest) -> None:
        """Ask the job to stop; it tears down, charges the time used and ends CANCELLED."""
        if self._cancel_reason is None:
            self._cancel_reason = request.reason or "cancelled by the user"

    async def _place_and_run(self) -> None:
        if self._input.wait_for_input and not await self._wait_for_input():
            return

        config = await workflow.execute_activity_method(
            JobActivities.load_job_config,
            JobConfigInput(),
            start_to_close_timeout=CONFIG_TIMEOUT,
        )
        self._config = config
        self._set_status(JobStatus.QUEUED)

        offers = await self._collect_offers(config)
        ranking = rank_offers(
            offers, self._constraints(self._input.max_budget_micros), self._policy()
        )
        self._state.offers = ranking.offers
        self._state.selection_reason = ranking.reason
        if not ranking.offers:
            self._finish(JobStatus.FAILED, self._no_offer_reason(offers, ranking.reason))
            return
        if self._cancelled():
            return

        if not await self._hold_budget():
            return

        if not await self._provision(ranking.offers, config.max_attempts):
            return
        await self._run_placed()

    async def _run_placed(self) -> None:
        """Monitor the live instance until the job is done, placing the job again after a
        preemption or an instance that is never ready."""
        config = self._config
        assert config is not None
        while (ended := await self._monitor(config)) != _InstanceEnd.JOB_DONE:
            # The instance was preempted or never became ready: bill its segment, then place
            # the job again on the best offer that fits the remaining budget, never one lost.
            assert self._offer is not None
            self._lost.append(self._offer)
            await self._tear_down()
            if ended == _InstanceEnd.PREEMPTED:
                self._preemptions += 1
                what = "the spot instance was preempted"
                if self._preemptions > config.max_preemptions:
                    self._finish(
                        JobStatus.FAILED,
                        f"{what} {self._preemptions} times, more than the "
                        f"{config.max_preemptions} this worker recovers from",
                    )
                    return
            else:
                what = f"the instance was not ready within {config.readiness_timeout_seconds} s"
                self._state.attempts[-1].error = what
                self._event(
                    JobEventType.ATTEMPT_FAILED,
                    f"attempt {self._attempt_number}: {what}",
                    provider=self._offer.provider,
                )

            remaining = self._state.held_micros - self._closed_cost_micros
            ranking = rank_offers(
                [offer for offer in self._state.offers if offer not in self._lost],
                self._constraints(remaining),
                self._policy(),
            )
            if not ranking.offers:
                self._finish(
                    JobStatus.FAILED,
                    f"{what} and no other offer fits the remaining budget of "
                    f"{micros_to_credits(remaining)} credits ({ranking.reason})",
                )
                return
            self._state.selection_reason = ranking.reason
            self._set_status(JobStatus.PROVISIONING)
            if not await self._provision(ranking.offers, config.max_attempts):
                return

    async def _wait_for_input(self) -> bool:
        """Wait for the input_ready signal; return False if the job ended instead."""
        timeout = self._input.input_timeout_seconds
        self._event(JobEventType.WAITING_FOR_INPUT, "waiting for the job's input to be uploaded")
        try:
            await workflow.wait_condition(
                lambda: self._input_ready or self._cancel_reason is not None,
                timeout=timedelta(seconds=timeout),
            )
        except asyncio.TimeoutError:
            self._finish(JobStatus.FAILED, f"the job's input was not uploaded within {timeout} s")
            return False
        if self._cancelled():
            return False
        self._event(JobEventType.INPUT_READY, "the job's input was uploaded")
        return True

    async def _collect_offers(self, config: JobConfig) -> list[Offer]:
        request = QuoteRequest(
            gpu_type=self._input.gpu_type,
            gpu_count=self._input.gpu_count,
            spot_ok=self._input.spot_ok,
        )
        offers, _ = await collect_offers(
            config.providers, request, timedelta(seconds=config.quote_timeout_seconds)
        )
        return offers

    def _constraints(self, budget_micros: int) -> Constraints:
        return Constraints(
            budget_micros=budget_micros,
            max_price_per_hour_micros=self._input.max_price_per_hour_micros,
            providers=self._input.providers,
            spot_ok=self._input.spot_ok,
        )

    def _policy(self) -> Policy:
        try:
            return Policy(self._input.policy)
        except ValueError:
            # The API accepts only known policies; a bad value from another client falls back
            # instead of failing the workflow task forever.
            workflow.logger.warning(
                "job %s: unknown policy %r, using balanced", self._input.job_id, self._input.policy
            )
            return Policy.BALANCED

    def _no_offer_reason(self, offers: list[Offer], ranking_reason: str) -> str:
        wanted = self._input.gpu_type or "a CPU-only instance"
        if not offers:
            return f"no enabled provider offered {wanted}"
        budget = micros_to_credits(self._input.max_budget_micros)
        return (
            f"no offer for {wanted} fits the job's limits (maximum budget {budget} credits): "
            f"{ranking_reason}"
        )

    async def _hold_budget(self) -> bool:
        amount = self._input.max_budget_micros
        hold = workflow.start_activity_method(
            JobActivities.hold_budget,
            BudgetRequest(
                tenant_id=self._input.tenant_id,
                job_id=self._input.job_id,
                amount_micros=amount,
                key=f"{self._input.job_id}/hold",
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
        )
        try:
            if workflow.patched(SHIELDED_HOLD_PATCH):
                # Shielded: a Temporal cancel must not stop the workflow from learning whether
                # the hold posted, or a posted hold would never be released.
                held = await asyncio.shield(hold)
            else:
                held = await hold
        except asyncio.CancelledError:
            try:
                await hold
            except ActivityError:
                pass
            else:
                self._state.held_micros = amount
            raise
        except ActivityError as error:
            if error_type(error) == INSUFFICIENT_CREDITS:
                reason = f"insufficient credits: {describe(error)}"
            else:
                reason = f"the budget could not be held: {describe(error)}"
            self._finish(JobStatus.FAILED, reason)
            return False

        self._state.held_micros = amount
        if held.low_balance is not None:
            self._send_notice(held.low_balance)
        return True

    def _send_notice(self, notice: LowBalanceNotice) -> None:
        self._pending_notices.append(notice)
        self._notices.append(asyncio.create_task(self._deliver_notice(notice)))

    async def _deliver_notice(self, notice: LowBalanceNotice) -> None:
        # Removed only once handled, so that a new run after continue-as-new sends it again.
        try:
            await workflow.execute_activity_method(
                WebhookActivities.deliver_low_balance,
                LowBalanceDelivery(notice=notice, job_id=self._input.job_id),
                start_to_close_timeout=WEBHOOK_TIMEOUT,
                schedule_to_close_timeout=WEBHOOK_DEADLINE,
                retry_policy=WEBHOOK_RETRY,
            )
        except ActivityError as error:
            workflow.logger.warning(
                "job %s: the low-balance notice to %s was not delivered: %s",
                self._input.job_id,
                notice.callback_url,
                describe(error),
            )
        self._pending_notices.remove(notice)

    async def _provision(self, ranked: list[Offer], max_attempts: int) -> bool:
        """Launch on the best offer that has capacity, trying at most `max_attempts` offers;
        return whether an instance is live."""
        self._set_status(JobStatus.PROVISIONING)
        first_attempt = len(self._state.attempts)
        for offer in ranked[:max_attempts]:
            if self._cancelled():
                return False

            self._attempt_number += 1
            number = self._attempt_number
            attempt = Attempt(number=number, offer=offer)
            self._state.attempts.append(attempt)
            self._event(
                JobEventType.ATTEMPT,
                f"attempt {number}: launching {offer.instance_type} in {offer.region}",
                provider=offer.provider,
            )
            request = ProvisionRequest(
                client_token=f"{self._input.job_id}-{number}",
                job_id=self._input.job_id,
                offer=offer,
                image=self._input.image,
                command=self._input.command,
                env=self._input.env,
                now=workflow.now().timestamp(),
            )
            launch = workflow.start_activity_method(
                JobActivities.provision_instance,
                ProvisionInput(request=request),
                start_to_close_timeout=PROVISION_TIMEOUT,
                retry_policy=PROVISION_RETRY,
            )
            try:
                # Shielded so that a cancel during the launch still learns the instance id
                # and tears the instance down instead of leaking it.
                launched = await asyncio.shield(launch)
            except asyncio.CancelledError:
                await self._adopt_after_cancel(launch, attempt, offer)
                raise
            except ActivityError as error:
                attempt.error = describe(error)
                kind = "no capacity" if error_type(error) == OUT_OF_CAPACITY else "launch failed"
                workflow.logger.warning(
                    "attempt %d on %s/%s: %s: %s",
                    number, offer.provider, offer.instance_type, kind, attempt.error,
                )
                self._event(
                    JobEventType.ATTEMPT_FAILED,
                    f"attempt {number}: {kind}: {attempt.error}",
                    provider=offer.provider,
                )
                if error_type(error) != OUT_OF_CAPACITY:
                    await self._release_attempt(attempt, request.client_token)
                continue

            attempt.instance_id = launched.instance_id
            self._use_instance(offer, launched.instance_id)
            return True

        tried = "; ".join(
            f"{a.offer.provider}/{a.offer.instance_type}: {a.error}"
            for a in self._state.attempts[first_attempt:]
        )
        self._finish(JobStatus.FAILED, f"every offer tried failed to provision ({tried})")
        return False

    async def _release_attempt(self, attempt: Attempt, client_token: str) -> None:
        """Tear down an instance that a failed launch created after all, so it never runs
        beside the next attempt's.

        Its time is not billed to the tenant, whose job never ran on it. It is recorded as a
        segment costing nothing, so that settlement books what the provider charges for it.
        """
        if not workflow.patched(RELEASE_ATTEMPT_PATCH):
            return
        released = await workflow.execute_activity_method(
            JobActivities.release_attempt,
            ReleaseInput(offer=attempt.offer, client_token=client_token, now=workflow.now().timestamp()),
            start_to_close_timeout=TERMINATE_TIMEOUT,
            retry_policy=UNTIL_DONE_RETRY,
        )
        if released.instance_id is None or released.report is None:
            return
        report = released.report
        attempt.instance_id = released.instance_id
        attempt.error += f"; the launch had created instance {released.instance_id}, now terminated"
        provider_cost = report.provider_cost_micros
        self._state.segments.append(
            Segment(
                attempt=attempt.number,
                provider=attempt.offer.provider,
                instance_id=released.instance_id,
                price_per_hour_micros=attempt.offer.price_per_hour_micros,
                billable_seconds=report.billable_seconds,
                cost_micros=0,
                end_state=report.state.value,
                provider_price_per_hour_micros=report.provider_price_per_hour_micros,
                provider_cost_micros=report.cost_micros if provider_cost is None else provider_cost,
            )
        )
        self._state.provider_cost_micros += self._state.segments[-1].provider_cost_micros

    async def _adopt_after_cancel(self, launch, attempt: Attempt, offer: Offer) -> None:
        try:
            launched = await launch
        except ActivityError as error:
            attempt.error = describe(error)
            return
        attempt.instance_id = launched.instance_id
        self._use_instance(offer, launched.instance_id)

    def _use_instance(self, offer: Offer, instance_id: str) -> None:
        self._offer = offer
        self._instance_live = True
        self._state.chosen_offer = offer
        self._state.instance_id = instance_id
        self._monitor_started_at = workflow.now()
        self._listed_before = False
        self._update_search_attributes()
        self._event(
            JobEventType.INSTANCE_LAUNCHED,
            f"attempt {self._attempt_number}: launched instance {instance_id}",
            provider=offer.provider,
            instance_id=instance_id,
        )

    async def _monitor(self, config: JobConfig) -> "_InstanceEnd":
        """Poll the instance until the job ends, the spot instance is preempted, or the
        instance misses its readiness deadline."""
        readiness_deadline = self._monitor_started_at + timedelta(
            seconds=config.readiness_timeout_seconds
        )
        while True:
            if self._history_too_long(config):
                raise _ContinueAsNew()
            if await self._cancel_requested_within(config.poll_interval_seconds):
                self._cancelled()
                return _InstanceEnd.JOB_DONE

            report = await workflow.execute_activity_method(
                JobActivities.check_instance,
                self._instance_input(),
                start_to_close_timeout=STATUS_TIMEOUT,
            )
            self._state.cost_micros = self._closed_cost_micros + report.cost_micros
            self._last_billable_seconds = report.billable_seconds
            if not report.listed and self._listed_before:
                return self._on_instance_vanished(report)
            self._listed_before = self._listed_before or report.listed

            if report.state != InstanceState.PENDING:
                if not self._state.started_at:
                    self._state.started_at = workflow.now().isoformat()
                self._set_status(JobStatus.RUNNING)
            elif workflow.now() > readiness_deadline:
                workflow.logger.warning(
                    "job %s: instance %s not ready after %d s",
                    self._input.job_id,
                    self._state.instance_id,
                    config.readiness_timeout_seconds,
                )
                return _InstanceEnd.NOT_READY

            if report.state == InstanceState.PREEMPTED and self._offer and self._offer.spot:
                workflow.logger.warning(
                    "job %s: spot instance %s was preempted",
                    self._input.job_id,
                    self._state.instance_id,
                )
                return _InstanceEnd.PREEMPTED

            if self._finish_on_instance_end(report):
                return _InstanceEnd.JOB_DONE

            if self._state.cost_micros >= self._state.held_micros:
                budget = micros_to_credits(self._state.held_micros)
                self._finish(
                    JobStatus.FAILED,
                    f"budget exhausted: the accrued cost reached the maximum budget of {budget} credits",
                )
                return _InstanceEnd.JOB_DONE

    def _history_too_long(self, config: JobConfig) -> bool:
        """Return whether to continue as new now: the history is long and no cancel waits.

        Deliveries in flight do not hold it back: the checkpoint carries the events and
        notices not yet delivered, and the new run sends them again.
        """
        info = workflow.info()
        too_long = (
            info.get_current_history_length() >= config.history_event_limit
            or info.is_continue_as_new_suggested()
        )
        if not too_long or self._cancel_reason is not None:
            return False
        return workflow.patched(CONTINUE_AS_NEW_PATCH)

    def _checkpoint(self) -> Checkpoint:
        assert self._config is not None and self._offer is not None
        return Checkpoint(
            state=self._state,
            config=self._config,
            offer=self._offer,
            attempt_number=self._attempt_number,
            closed_cost_micros=self._closed_cost_micros,
            last_billable_seconds=self._last_billable_seconds,
            monitor_started_at=self._monitor_started_at.isoformat(),
            listed_before=self._listed_before,
            preemptions=self._preemptions,
            lost=self._lost,
            delivered_events=self._delivered_events,
            pending_notices=list(self._pending_notices),
        )

    def _restore(self, checkpoint: Checkpoint) -> None:
        self._state = checkpoint.state
        self._config = checkpoint.config
        self._offer = checkpoint.offer
        self._instance_live = True
        self._attempt_number = checkpoint.attempt_number
        self._closed_cost_micros = checkpoint.closed_cost_micros
        self._last_billable_seconds = checkpoint.last_billable_seconds
        self._monitor_started_at = datetime.fromisoformat(checkpoint.monitor_started_at)
        self._listed_before = checkpoint.listed_before
        self._preemptions = checkpoint.preemptions
        self._lost = checkpoint.lost
        self._delivered_events = checkpoint.delivered_events
        for notice in checkpoint.pending_notices:
            self._send_notice(notice)

    def _on_instance_vanished(self, report: InstanceReport) -> "_InstanceEnd":
        """End monitoring of an instance that the provider listed before and lists no more."""
        workflow.logger.warning(
            "job %s: the provider no longer lists instance %s: %s",
            self._input.job_id,
            self._state.instance_id,
            report.message,
        )
        if self._offer is not None and self._offer.spot:
            # A reclaimed spot instance may vanish instead of reading PREEMPTED.
            return _InstanceEnd.PREEMPTED
        self._finish(
            JobStatus.FAILED,
            f"the provider no longer lists instance {self._state.instance_id}",
        )
        return _InstanceEnd.JOB_DONE

    def _finish_on_instance_end(self, report: InstanceReport) -> bool:
        self._state.exit_code = report.exit_code
        if report.state == InstanceState.SUCCEEDED:
            self._finish(JobStatus.SUCCEEDED)
        elif report.state == InstanceState.FAILED:
            if report.exit_code is not None:
                reason = f"the command exited with code {report.exit_code}"
            else:
                reason = f"the instance failed: {report.message or 'no reason given by the provider'}"
            self._finish(JobStatus.FAILED, reason)
        elif report.state == InstanceState.PREEMPTED:
            self._finish(JobStatus.FAILED, "the spot instance was preempted by the provider")
        elif report.state == InstanceState.TERMINATED:
            self._finish(JobStatus.FAILED, "the provider terminated the instance")
        else:
            return False
        return True

    async def _cancel_requested_within(self, seconds: int) -> bool:
        try:
            await workflow.wait_condition(
                lambda: self._cancel_reason is not None, timeout=timedelta(seconds=seconds)
            )
        except asyncio.TimeoutError:
            return False
        return True

    def _cancelled(self) -> bool:
        """Finish as CANCELLED if a cancel was requested; return whether it was."""
        if self._cancel_reason is None:
            return False
        self._finish(JobStatus.CANCELLED, self._cancel_reason)
        return True

    async def _tear_down(self) -> None:
        if not self._instance_live:
            return
        report = await workflow.execute_activity_method(
            JobActivities.terminate_instance,
            self._instance_input(),
            start_to_close_timeout=TERMINATE_TIMEOUT,
            retry_policy=UNTIL_DONE_RETRY,
        )
        self._instance_live = False
        assert self._offer is not None and self._state.instance_id is not None
        self._state.segments.append(
            Segment(
                attempt=self._attempt_number,
                provider=self._offer.provider,
                instance_id=self._state.instance_id,
                price_per_hour_micros=self._offer.price_per_hour_micros,
                billable_seconds=report.billable_seconds,
                cost_micros=report.cost_micros,
                end_state=report.state.value,
                provider_price_per_hour_micros=report.provider_price_per_hour_micros,
                provider_cost_micros=report.provider_cost_micros,
            )
        )
        self._event(
            JobEventType.SEGMENT_BILLED,
            f"instance {self._state.instance_id} ended {report.state.value} after"
            f" {report.billable_seconds} billable seconds",
            provider=self._offer.provider,
            instance_id=self._state.instance_id,
            amount_micros=report.cost_micros,
        )
        self._last_billable_seconds = 0
        self._closed_cost_micros += report.cost_micros
        if report.provider_cost_micros is None:
            self._state.provider_cost_micros += report.cost_micros
        else:
            self._state.provider_cost_micros += report.provider_cost_micros
        self._state.cost_micros = self._closed_cost_micros
        if report.exit_code is not None and self._state.exit_code is None:
            self._state.exit_code = report.exit_code

    async def _settle(self) -> None:
        held = self._state.held_micros
        if held == 0:
            return
        settled = await workflow.execute_activity_method(
            JobActivities.settle_budget,
            SettleInput(
                tenant_id=self._input.tenant_id,
                job_id=self._input.job_id,
                held_micros=held,
                cost_micros=self._state.cost_micros,
                provider_charges=[self._provider_charge(s) for s in self._state.segments],
            ),
            start_to_close_timeout=LEDGER_TIMEOUT,
            retry_policy=UNTIL_DONE_RETRY,
        )
        self._state.held_micros = 0
        self._state.captured_micros = settled.captured_micros
        self._state.released_micros = settled.released_micros
        self._state.cost_micros = settled.captured_micros
        self._event(
            JobEventType.SETTLED,
            f"captured {micros_to_credits(settled.captured_micros)} credits and released"
            f" {micros_to_credits(settled.released_micros)}",
            amount_micros=settled.captured_micros,
        )

    def _provider_charge(self, segment: Segment) -> ProviderCharge:
        price = segment.provider_price_per_hour_micros
        cost = segment.provider_cost_micros
        return ProviderCharge(
            job_id=self._input.job_id,
            tenant_id=self._input.tenant_id,
            attempt=segment.attempt,
            provider=segment.provider,
            instance_id=segment.instance_id,
            billable_seconds=segment.billable_seconds,
            quoted_price_per_hour_micros=segment.price_per_hour_micros,
            quoted_cost_micros=segment.cost_micros,
            charged_price_per_hour_micros=segment.price_per_hour_micros if price is None else price,
            charged_cost_micros=segment.cost_micros if cost is None else cost,
            reported=price is not None,
        )

    def _instance_input(self) -> InstanceInput:
        assert self._offer is not None and self._state.instance_id is not None
        return InstanceInput(
            offer=self._offer,
            instance_id=self._state.instance_id,
            now=workflow.now().timestamp(),
            last_billable_seconds=self._last_billable_seconds,
        )

    def _set_status(self, status: JobStatus) -> None:
        if self._state.status in FINAL_JOB_STATUSES or self._state.status == status:
            return
        if self._outcome is not None and status not in FINAL_JOB_STATUSES:
            return
        workflow.logger.info("job %s is %s", self._input.job_id, status.value)
        self._state.status = status
        if not workflow.unsafe.is_replaying():
            record_job_status(status.value)
        self._update_search_attributes()
        message = f"the job is {status.value}"
        if self._state.failure_reason:
            message = f"{message}: {self._state.failure_reason}"
        self._event(JobEventType.STATUS, message)

    def _event(
        self,
        type: JobEventType,
        message: str,
        *,
        provider: str | None = None,
        instance_id: str | None = None,
        amount_micros: int | None = None,
    ) -> None:
        self._state.events.append(
            JobEvent(
                sequence=len(self._state.events) + 1,
                time=workflow.now().isoformat(),
                type=type,
                status=self._state.status,
                message=message,
                provider=provider,
                instance_id=instance_id,
                amount_micros=amount_micros,
            )
        )

    async def _deliver_webhooks(self, url: str) -> None:
        """Send each status event to `url`, one at a time in timeline order, until the job
        has closed and every event is handled."""
        while True:
            await workflow.wait_condition(
                lambda: self._delivered_events < len(self._state.events) or self._closing
            )
            if self._delivered_events == len(self._state.events):
                return
            event = self._state.events[self._delivered_events]
            if event.type != JobEventType.STATUS:
                self._delivered_events += 1
                continue
            try:
                await workflow.execute_activity_method(
                    WebhookActivities.deliver_event,
                    WebhookDelivery(
                        url=url,
                        tenant_id=self._input.tenant_id,
                        job_id=self._input.job_id,
                        event=event,
                    ),
                    start_to_close_timeout=WEBHOOK_TIMEOUT,
                    schedule_to_close_timeout=WEBHOOK_DEADLINE,
                    retry_policy=WEBHOOK_RETRY,
                )
            except ActivityError as error:
                rejected = error_type(error) == WEBHOOK_REJECTED
                workflow.logger.warning(
                    "job %s: event %d was not delivered to %s (%s): %s",
                    self._input.job_id,
                    event.sequence,
                    url,
                    "rejected" if rejected else "gave up",
                    describe(error),
                )
            # Counted only once handled, so that a run that continues as new meanwhile sends
            # the event again from the new run: at least once, with the same Webhook-Id.
            self._delivered_events += 1

    def _update_search_attributes(self) -> None:
        if not workflow.patched(SEARCH_ATTRIBUTES_PATCH):
            return
        updates = [
            JOB_STATUS.value_set(self._state.status.value),
            COST_MICROS.value_set(self._state.cost_micros),
        ]
        if self._offer is not None:
            updates.append(PROVIDER.value_set(self._offer.provider))
        workflow.upsert_search_attributes(updates)

    def _finish(self, status: JobStatus, reason: str = "") -> None:
        """Decide the job's final status; `_complete` shows it after teardown and settlement."""
        if self._outcome is not None:
            return
        self._outcome = (status, reason)
        if reason:
            workflow.logger.info("job %s ends %s: %s", self._input.job_id, status.value, reason)

    def _complete(self) -> None:
        """Show the final status, once nothing is left running and nothing held."""
        # Every path out of placement decides an outcome; FAILED guards a path that does not.
        status, reason = self._outcome or (JobStatus.FAILED, "the job ended without an outcome")
        self._state.failure_reason = reason
        self._state.finished_at = workflow.now().isoformat()
        self._set_status(status)
