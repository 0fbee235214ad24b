"""A bulletin: the trigger is a count (CleverTap's ``targets``), made delivered in the
transaction that stores its event. There is nothing to send."""

from __future__ import annotations

from sluice.actions.base import Attempt, AttemptResult, Outcome, Target


class BulletinAction:
    counted = True
    takes_queue = False

    def checked(self, target: str | None, queue: str | None, *, allow_private: bool) -> Target:
        if target or queue:
            raise ValueError("a bulletin has no URL, task or queue")
        return Target()

    async def attempt(self, attempt: Attempt) -> Outcome:
        return Outcome(AttemptResult.FAILED, 0, error="nothing to deliver for bulletin")
