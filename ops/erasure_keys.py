"""The Redis keys an erasure deletes (``sluice.ops.erasure``): those naming a
person (email-open claims) or one of their events (pending marks, order claims). Formats in
``sluice.producer.keys``."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import redis

from sluice.ops.erasure_match import Person
from sluice.producer import keys

# Deletes each key that still holds the message id given for it; how many it deleted.
_FORGET_CLAIMS = """
local n = 0
for i, key in ipairs(KEYS) do
    if redis.call('GET', key) == ARGV[i] then
        redis.call('UNLINK', key)
        n = n + 1
    end
end
return n
"""


class ClaimKeys:
    """The Redis keys naming a person or their events (formats in ``sluice.producer.keys``)."""

    def __init__(self, client: redis.Redis) -> None:
        self._redis = client
        self._forget = client.register_script(_FORGET_CLAIMS)

    def forget_pending(self, workspace_id: str, message_ids: Sequence[str]) -> int:
        names = [keys.pending(workspace_id, message_id) for message_id in message_ids]
        return int(self._redis.unlink(*names)) if names else 0

    def forget_orders(self, workspace_id: str, held: Iterable[tuple[str, str]]) -> int:
        """Order claims still held by these ``(order_id, message_id)``."""
        pairs = list(held)
        if not pairs:
            return 0
        names = [keys.order_claim(workspace_id, order_id) for order_id, _ in pairs]
        return int(self._forget(keys=names, args=[message_id for _, message_id in pairs]))

    def forget_opens(self, person: Person) -> int:
        users = [
            # The user keys of email-open claims (sluice.rules.engine.open_user_key).
            *(keys.open_user("id", u) for u in sorted(person.user_ids)),
            *(keys.open_user("email", e) for e in sorted(person.emails)),
        ]
        names = [keys.email_opens(person.workspace_id, user) for user in users]
        return int(self._redis.unlink(*names)) if names else 0
