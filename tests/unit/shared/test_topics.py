"""The topic catalogue agrees with the contract's table."""

from shared.contract import CATALOGUE, DLQ_CATALOGUE, TOPICS, dlq
from shared.contract.topics import DAY_MS

CONTRACT_TABLE = {
    "orders.purchases.v1": ("delete", 30),
    "crm.interactions.v1": ("delete", 30),
    "crm.customer-intake.v1": ("delete", 30),
    "crm.complaint-intake.v1": ("delete", 30),
    "crm.customers.v1": ("compact", None),
    "crm.tier-changes.v1": ("delete", 90),
    "crm.customer-tiers.v1": ("compact", None),
    "crm.complaints.v1": ("delete", 90),
    "crm.notifications.v1": ("delete", 30),
    "crm.account-managers.v1": ("compact", None),
    "crm.care-tasks.v1": ("delete", 30),
}


def test_every_topic_of_the_contract_is_in_the_catalogue_with_its_cleanup_policy_and_retention() -> None:
    assert {spec.name for spec in CATALOGUE} == set(CONTRACT_TABLE)
    for spec in CATALOGUE:
        policy, days = CONTRACT_TABLE[spec.name]
        assert spec.config["cleanup.policy"] == policy
        if days:
            assert spec.config["retention.ms"] == str(days * DAY_MS)
        assert spec.compacted == (policy == "compact")


def test_every_topic_has_a_dead_letter_topic_kept_for_thirty_days() -> None:
    assert {spec.name for spec in DLQ_CATALOGUE} == {dlq(name) for name in CONTRACT_TABLE}
    for spec in DLQ_CATALOGUE:
        assert spec.name.endswith(".dlq")
        assert spec.config == {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
    assert len(TOPICS) == 2 * len(CONTRACT_TABLE)
