"""Which session an inference runs on: every core for a request alone, a lane each for several.

One session with all the cores' threads gives a lone request its shortest wait (IS-Net int8 at
1024x768 on 2 cores: ~0.15 s, against ~0.28 s on one thread). Two requests sharing that one
session take turns, and the rest of each request (decoding, X-Type, edges, encoding) then
competes with the net's threads for the same cores: 1 MP, 2 clients, in process, 282 images a
minute. Two one-thread sessions side by side, each request on its own: 320 a minute at the same
CPU cost per image. So the first inference in flight takes the wide session and each further
one a narrow lane, or the wide session again if it is free and no lane is: with one lane beside
the wide session, 271 / 303 / 316 a minute at 1 / 2 / 4 clients; with two lanes 253 / 318 / 315
for ~260 MB more, so the engine opens one per further concurrent run. Lanes can be added
while serving (the server opens them once the gateway has seen it healthy: start-up stays short,
and its log says `inference_lanes_open` when they are; service/server.py says why the wait).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Sequence


class Lanes:
    """At most 1 + (lanes added) inferences at once; `session()` hands out the one to run on."""

    def __init__(self, wide: object, narrow: Sequence[object] = ()):
        self._wide = wide
        self._wide_free = True
        self._free = list(narrow)
        self._in_flight = 0
        self._changed = threading.Condition()

    def add(self, session: object) -> None:
        with self._changed:
            self._free.append(session)
            self._changed.notify()

    @contextlib.contextmanager
    def session(self) -> Iterator[object]:
        with self._changed:
            self._changed.wait_for(lambda: self._wide_free or self._free)
            if self._wide_free and (self._in_flight == 0 or not self._free):
                self._wide_free, chosen = False, self._wide
            else:
                chosen = self._free.pop()
            self._in_flight += 1
        try:
            yield chosen
        finally:
            with self._changed:
                self._in_flight -= 1
                if chosen is self._wide:
                    self._wide_free = True
                else:
                    self._free.append(chosen)
                self._changed.notify()
