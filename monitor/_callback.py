"""What the framework callbacks (Lightning, Hugging Face) share."""

from __future__ import annotations

import logging


class FailsQuietly:
    """Monitoring never stops the training: an error stops recording once, and says what was lost.

    Subclasses set ``framework`` (the name in the warning) and check ``self._broken`` before
    recording.
    """

    framework = "framework"
    _broken = False

    def _fail(self, what: str, err: BaseException) -> None:
        if not self._broken:
            self._broken = True
            logging.getLogger(type(self).__module__).warning(
                "Babysitter: %s callback stopped recording after an error in %s: %s: %s",
                self.framework, what, type(err).__name__, err, exc_info=err)
