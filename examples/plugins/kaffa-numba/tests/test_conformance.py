"""kaffa's conformance suite on the 'numba' backend (``--kaffa-backend numba`` in pyproject.toml):
claimed ops must pass, the rest are skipped as unsupported."""


def test_conformance(kaffa_case):
    kaffa_case.check()
