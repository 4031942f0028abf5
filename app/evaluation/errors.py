"""The evaluation's one error: something the user gave it (a dataset, a baseline, a prices file) cannot be used.

Library code raises it with a message that names the file (and line or field) and says the fix; it is a UserError
(app/errors.py), so only the CLI turns it into an `Error:` line and exit 2.
"""

from __future__ import annotations

from app.errors import UserError


class EvaluationError(UserError):
    """An input to the evaluation cannot be used; the message names it and says the fix."""
