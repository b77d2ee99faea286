"""Instance types that the `aws` provider launches for GPU requests, and their on-demand prices.

GPU types map to EC2 instance types by GPU count. A request gets the smallest listed instance
with at least the requested number of GPUs, and the offer states that instance's GPU count:

| GPU  | GPUs | instance type |
| ---- | ---- | ------------- |
| A10G | 1    | g5.xlarge     |
| A10G | 4    | g5.12xlarge   |
| L4   | 1    | g6.xlarge     |
| L4   | 4    | g6.12xlarge   |
| A100 | 8    | p4d.24xlarge  |
| H100 | 1    | p5.4xlarge    |
| H100 | 8    | p5.48xlarge   |

On-demand prices are a shipped table, because EC2 has no API for them outside the separate
AWS Price List service. They are USD per instance-hour for Linux in us-east-1, as listed in
SkyPilot's public AWS catalog (github.com/skypilot-org/skypilot-catalog,
`catalogs/v8/aws/vms.csv` at commit 00148f2af3672e2229b4f7bf8157d5a3f36e3c35, column Price),
recorded on 2026-12-04. g5.xlarge at $1.006 also matches a us-east-1 pricing article dated
2026-06-17 (factualminds.com, "Amazon EC2 On-Demand Pricing ... (2026)").
NOTE: prices change; check them against AWS's pricing page before billing real jobs. A
region without a table entry gets no on-demand offers (spot offers still come from the API).
"""

from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True)
class InstanceType:
    """An EC2 instance type that the `aws` provider offers for a GPU type."""

    name: str
    """EC2 instance type, such as "g5.xlarge"."""

    gpu_type: str
    """GPU model, as the system names it, such as "A10G"."""

    gpu_count: int
    """GPUs in one instance."""


INSTANCE_TYPES: tuple[InstanceType, ...] = (
    InstanceType("g5.xlarge", "A10G", 1),
    InstanceType("g5.12xlarge", "A10G", 4),
    InstanceType("g6.xlarge", "L4", 1),
    InstanceType("g6.12xlarge", "L4", 4),
    InstanceType("p4d.24xlarge", "A100", 8),
    InstanceType("p5.4xlarge", "H100", 1),
    InstanceType("p5.48xlarge", "H100", 8),
)
"""Instance types offered, by GPU type and count (the table in the module docstring)."""

ON_DEMAND_USD_PER_HOUR: dict[str, dict[str, Decimal]] = {
    "us-east-1": {
        "g5.xlarge": Decimal("1.006"),
        "g5.12xlarge": Decimal("5.672"),
        "g6.xlarge": Decimal("0.8048"),
        "g6.12xlarge": Decimal("4.6016"),
        "p4d.24xlarge": Decimal("21.957642"),
        "p5.4xlarge": Decimal("6.88"),
        "p5.48xlarge": Decimal("55.04"),
    },
}
"""On-demand Linux price in USD per instance-hour, by region and instance type; see the
module docstring for the source and date."""


def instance_type_for(gpu_type: str, gpu_count: int) -> InstanceType | None:
    """Return the smallest instance type with at least `gpu_count` GPUs of `gpu_type`.

    The GPU type matches ignoring case. Returns None when no listed instance fits.
    """
    fitting = [
        instance
        for instance in INSTANCE_TYPES
        if instance.gpu_type.lower() == gpu_type.lower() and instance.gpu_count >= gpu_count
    ]
    if not fitting:
        return None
    return min(fitting, key=lambda instance: instance.gpu_count)


def instance_type_named(name: str) -> InstanceType | None:
    """Return the listed instance type called `name`, or None."""
    return next((instance for instance in INSTANCE_TYPES if instance.name == name), None)


def on_demand_usd_per_hour(region: str, instance_type: str) -> Decimal | None:
    """Return the table's on-demand price, or None when the table has none."""
    return ON_DEMAND_USD_PER_HOUR.get(region, {}).get(instance_type)
