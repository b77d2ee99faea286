"""The side effects that `JobWorkflow` requests: quotes, budget, instances and settlement.

Every activity here is safe to run more than once. Ledger transactions carry keys derived from
the job id and the step. Provisioning carries a client token derived from the job id and the
attempt. Status checks only read, and terminating a terminated instance succeeds.

Errors are classified where they enter: provider and ledger rejections become non-retryable
`ApplicationError`s whose `type` the workflow matches on; everything else is left to Temporal's
retries.
"""

import asyncio
import logging
from collections.abc import Mapping

from sqlalchemy import Engine
from temporalio import activity
from temporalio.exceptions import ApplicationError

import ledger
from activities import metrics
from activities.reliability import ReliabilityTracker
from activities.types import (
    INSUFFICIENT_CREDITS,
    LEDGER_REJECTED,
    OUT_OF_CAPACITY,
    PROVISIONING_FAILED,
    UNKNOWN_PROVIDER,
    BudgetRequest,
    BudgetResult,
    InstanceInput,
    InstanceReport,
    JobConfig,
    JobConfigInput,
    LogsInput,
    LogsOutput,
    ProvisionInput,
    ProvisionOutput,
    QuoteInput,
    QuoteOutput,
    ReleaseInput,
    ReleaseOutput,
    SettleInput,
    SettleOutput,
)
from ledger.alerts import check_low_balance, rearm_low_balance
from ledger.metering import billing_rule_for, capped_capture
from providers.base import (
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    LogsNotAvailable,
    OutOfCapacity,
    PermanentProviderError,
    ProviderClient,
)

logger = logging.getLogger(__name__)

TERMINATE_NOT_FOUND_ATTEMPTS = 5
"""Tries of `terminate_instance` that see the instance unlisted before it is taken as gone.

Some providers list an instance only seconds after launching it (EC2 returns
InvalidInstanceID.NotFound meanwhile), so the first unlisted reads are retried. With the
workflow's retry policy, five tries span about 15 seconds."""


class JobActivities:
    """Activities of a job, bound to the worker's providers and ledger."""

    def __init__(
        self,
        *,
        providers: Mapping[str, ProviderClient],
        ledger_engine: Engine,
        poll_interval_seconds: int,
        max_attempts: int = 3,
        max_preemptions: int = 3,
        readiness_timeout_seconds: int = 900,
        quote_timeout_seconds: int = 10,
        history_event_limit: int = 5000,
    ) -> None:
        self._providers = dict(providers)
        self._engine = ledger_engine
        self._poll_interval_seconds = poll_interval_seconds
        self._max_attempts = max_attempts
        self._max_preemptions = max_preemptions
        self._readiness_timeout_seconds = readiness_timeout_seconds
        self._quote_timeout_seconds = quote_timeout_seconds
        self._history_event_limit = history_event_limit
        self.reliability = ReliabilityTracker()

    def _provider(self, name: str) -> ProviderClient:
        try:
            return self._providers[name]
        except KeyError:
            raise ApplicationError(
                f"provider {name!r} is not enabled on this worker; enabled: {sorted(self._providers)}",
                type=UNKNOWN_PROVIDER,
                non_retryable=True,
            ) from None

    @activity.defn
    async def load_job_config(self, _: JobConfigInput) -> JobConfig:
        """Return the enabled providers, the polling interval and the attempt limits of this worker."""
        return JobConfig(
            providers=list(self._providers),
            poll_interval_seconds=self._poll_interval_seconds,
            max_attempts=self._max_attempts,
            max_preemptions=self._max_preemptions,
            readiness_timeout_seconds=self._readiness_timeout_seconds,
            quote_timeout_seconds=self._quote_timeout_seconds,
            history_event_limit=self._history_event_limit,
        )

    @activity.defn
    async def get_quotes(self, input: QuoteInput) -> QuoteOutput:
        """Ask one provider for its offers."""
        offers = await self._provider(input.provider).quote(input.request)
        learned = self.reliability.estimate(input.provider)
        if learned is not None:
            # The provider's own figure is a prior; recent launches here are the better guide.
            for offer in offers:
                offer.reliability = learned
        return QuoteOutput(offers=offers)

    @activity.defn
    async def hold_budget(self, input: BudgetRequest) -> BudgetResult:
        """Move the job's maximum budget from the tenant's available credits to held."""
        try:
            posted = await asyncio.to_thread(
                ledger.hold,
                self._engine,
                tenant_id=input.tenant_id,
                job_id=input.job_id,
                amount_micros=input.amount_micros,
                key=input.key,
            )
        except ledger.InsufficientFunds as error:
            message = (
                f"the maximum budget of {ledger.micros_to_credits(error.requested_micros)} credits"
                f" is more than the {ledger.micros_to_credits(error.available_micros)} credits"
                " available"
            )
            raise ApplicationError(message, type=INSUFFICIENT_CREDITS, non_retryable=True) from error
        except (ledger.LedgerError, ValueError) as error:
            # ValueError: the ledger rejects the request itself, such as a reserved tenant id;
            # retrying it would fail the same way for ever.
            raise ApplicationError(str(error), type=LEDGER_REJECTED, non_retryable=True) from error
        if not posted.replayed:
            metrics.record_hold(input.amount_micros)

        # A retry after the check disarmed the alert finds it disarmed and returns no notice.
        # NOTE: so a worker crash between the check and the return loses that one notice.
        notice = await asyncio.to_thread(check_low_balance, self._engine, input.tenant_id)
        if notice is not None:
            activity.logger.info(
                "tenant %s: available credits %d fell below the alert threshold %d",
                input.tenant_id,
                notice.available_micros,
                notice.threshold_micros,
            )
        return BudgetResult(
            transaction_id=posted.transaction_id, replayed=posted.replayed, low_balance=notice
        )

    @activity.defn
    async def provision_instance(self, input: ProvisionInput) -> ProvisionOutput:
        """Launch an instance for one attempt, or adopt the one its client token launched."""
        name = input.request.offer.provider
        provider = self._provider(name)
        try:
            instance_id = await provider.provision(input.request)
        except OutOfCapacity as error:
            self.reliability.record(name, succeeded=False)
            metrics.record_attempt(name, metrics.AttemptOutcome.OUT_OF_CAPACITY)
            raise ApplicationError(str(error), type=OUT_OF_CAPACITY, non_retryable=True) from error
        except PermanentProviderError as error:
            self.reliability.record(name, succeeded=False)
            metrics.record_attempt(name, metrics.AttemptOutcome.FAILED)
            raise ApplicationError(str(error), type=PROVISIONING_FAILED, non_retryable=True) from error
        self.reliability.record(name, succeeded=True)
        metrics.record_attempt(name, metrics.AttemptOutcome.LAUNCHED)
        activity.logger.info(
            "provisioned instance %s on %s", instance_id, input.request.offer.provider
        )
        return ProvisionOutput(instance_id=instance_id)

    @activity.defn
    async def check_instance(self, input: InstanceInput) -> InstanceReport:
        """Read an instance's state and price its usage so far at the offer's rate.

        An instance that the provider does not list is reported PENDING with `listed` False,
        so the workflow applies its readiness deadline to it.
        """
        try:
            status = await self._provider(input.offer.provider).status(
                input.instance_id, input.now
            )
        except InstanceNotFound as error:
            activity.logger.warning("instance %s is not listed: %s", input.instance_id, error)
            unlisted = InstanceStatus(
                input.instance_id,
                InstanceState.PENDING,
                billable_seconds=input.last_billable_seconds,
                message=str(error),
            )
            return _report(input, unlisted, listed=False)
        return _report(input, status)

    @activity.defn
    async def terminate_instance(self, input: InstanceInput) -> InstanceReport:
        """Tear an instance down and price its final usage.

        The provider raises TransientProviderError until it confirms the instance is gone, so
        Temporal retries this activity until then.
        """
        try:
            status = await self._provider(input.offer.provider).terminate(
                input.instance_id, input.now
            )
        except InstanceNotFound as error:
            attempt = activity.info().attempt
            if attempt < TERMINATE_NOT_FOUND_ATTEMPTS:
                raise ApplicationError(
                    f"instance {input.instance_id} is not listed yet (try {attempt} of"
                    f" {TERMINATE_NOT_FOUND_ATTEMPTS}): {error}"
                ) from error
            # NOTE: an instance that is listed only after this point keeps running until the
            # orphan sweep finds it by its tag.
            activity.logger.warning(
                "instance %s on %s is still not listed after %d tries; taking it as gone and"
                " billing the %d seconds last read",
                input.instance_id,
                input.offer.provider,
                attempt,
                input.last_billable_seconds,
            )
            gone = InstanceStatus(
                input.instance_id,
                InstanceState.TERMINATED,
                billable_seconds=input.last_billable_seconds,
                message=f"the provider does not list the instance: {error}",
            )
            return _report(input, gone, listed=False)

        activity.logger.info(
            "terminated instance %s on %s after %d billable seconds",
            input.instance_id,
            input.offer.provider,
            status.billable_seconds,
        )
        return _report(input, status)

    @activity.defn
    async def settle_budget(self, input: SettleInput) -> SettleOutput:
        """Book the providers' charges, capture the job's cost, capped at its hold, and release
        the rest of the hold."""
        for charge in input.provider_charges:
            try:
                await asyncio.to_thread(ledger.record_provider_charge, self._engine, charge)
            except ledger.LedgerError as error:
                raise ApplicationError(
                    str(error), type=LEDGER_REJECTED, non_retryable=True
                ) from error

        split = capped_capture(input.cost_micros, input.held_micros)
        captured, released = split.capture_micros, split.release_micros
        if split.over_micros:
            activity.logger.warning(
                "job %s cost %d micro-credits more than its hold; the excess is not charged",
                input.job_id,
                split.over_micros,
            )
        # Capture and release in one database transaction, each still keyed on its own.
        operations = [
            ledger.Operation(
                kind=kind,
                tenant_id=input.tenant_id,
                job_id=input.job_id,
                amount_micros=amount,
                key=f"{input.job_id}/{kind}",
            )
            for kind, amount in (("capture", captured), ("release", released))
            if amount > 0
        ]
        if operations:
            results = await asyncio.to_thread(ledger.post_batch, self._engine, operations)
            for result in results:
                if isinstance(result, ledger.LedgerError):
                    raise ApplicationError(str(result), type=LEDGER_REJECTED, non_retryable=True)
                if result.replayed:
                    continue
                if result.kind == "capture":
                    metrics.record_capture(result.amount_micros)
                else:
                    metrics.record_release(result.amount_micros)

        if released > 0:
            await asyncio.to_thread(rearm_low_balance, self._engine, input.tenant_id)
        return SettleOutput(captured_micros=captured, released_micros=released)

    @activity.defn
    async def release_attempt(self, input: ReleaseInput) -> ReleaseOutput:
        """Terminate the instance, if any, that a failed provisioning attempt launched after all.

        A create can succeed at the provider and still fail or time out for the caller, on
        every try. The instance is looked up by the attempt's client token and torn down, so
        the job moves to its next offer without leaving one behind. Like `terminate_instance`,
        this raises until the provider confirms the instance is gone.
        """
        provider = self._provider(input.offer.provider)
        find = getattr(provider, "find_instance", None)
        if find is None:
            return ReleaseOutput()
        instance_id = await find(input.client_token)
        if instance_id is None:
            return ReleaseOutput()
        try:
            status = await provider.terminate(instance_id, input.now)
        except InstanceNotFound:
            return ReleaseOutput()
        activity.logger.warning(
            "attempt %s on %s failed but launched instance %s; terminated it after %d"
            " billable seconds",
            input.client_token,
            input.offer.provider,
            instance_id,
            status.billable_seconds,
        )
        priced = InstanceInput(offer=input.offer, instance_id=instance_id, now=input.now)
        return ReleaseOutput(instance_id=instance_id, report=_report(priced, status))

    @activity.defn
    async def read_logs(self, input: LogsInput) -> LogsOutput:
        """Read the tail of an instance's output, where its provider keeps one."""
        provider = self._provider(input.provider)
        read = getattr(provider, "logs", None)
        if read is None:
            return LogsOutput(
                available=False, reason=f"provider {input.provider} does not expose logs"
            )
        try:
            text = await read(input.instance_id, input.max_bytes)
        except (InstanceNotFound, LogsNotAvailable) as error:
            return LogsOutput(available=False, reason=str(error))
        return LogsOutput(available=True, text=text)

    def all(self) -> list:
        """Return every activity method, for registering on a worker."""
        return [
            self.read_logs,
            self.release_attempt,
            self.load_job_config,
            self.get_quotes,
            self.hold_budget,
            self.provision_instance,
            self.check_instance,
            self.terminate_instance,
            self.settle_budget,
        ]


def _report(input: InstanceInput, status: InstanceStatus, *, listed: bool = True) -> InstanceReport:
    rule = billing_rule_for(
        input.offer.provider, minimum_billed_seconds=input.offer.minimum_billed_seconds
    )
    cost = rule.cost_micros(
        price_per_hour_micros=input.offer.price_per_hour_micros,
        seconds=status.billable_seconds,
    )
    provider_cost = None
    if status.price_per_hour_micros is not None:
        provider_cost = rule.cost_micros(
            price_per_hour_micros=status.price_per_hour_micros,
            seconds=status.billable_seconds,
        )
    return InstanceReport(
        state=status.state,
        billable_seconds=status.billable_seconds,
        cost_micros=cost,
        exit_code=status.exit_code,
        message=status.message,
        listed=listed,
        provider_price_per_hour_micros=status.price_per_hour_micros,
        provider_cost_micros=provider_cost,
    )
