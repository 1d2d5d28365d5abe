"""Second derivatives: gradgradcheck where declared; an undeclared double backward must raise or
be right."""

from verify.hunt import hunt
from verify.properties import second_order as PROPERTY


def test_second_order(variant, tier, report_session):
    hunt(PROPERTY, variant, tier, report_session)
