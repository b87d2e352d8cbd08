"""The conformance suite as one parametrized pytest test:

pytest --pyargs kaffa_conformance.suite --kaffa-backend mychip
"""


def test_conformance(kaffa_case):
    kaffa_case.check()
