"""What the tests share and no test module defines: loopback sites and servers, synthetic NIRs,
helpers and fixtures.

Imported in one form, `from tests.support.fakesites import PasteSite` (pyproject.toml puts the
repository on pytest's `pythonpath`). The modules holding fixtures are listed in
tests/conftest.py's `pytest_plugins`, so a test asks for `paste_site` by name and imports no
fixture.
"""
