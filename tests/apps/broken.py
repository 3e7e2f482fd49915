"""An app that fails to import."""

import no_such_dependency_for_axeom_tests  # noqa: F401

from axeom import Axeom

app = Axeom()
