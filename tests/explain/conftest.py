"""The served test project (a registry with tiny U-Nets) for the explanation commands."""

from tests.serve.conftest import project  # noqa: F401 - a fixture
