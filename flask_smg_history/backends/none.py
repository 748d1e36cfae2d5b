"""A backend that keeps nothing, for deployments where history is switched off.

Writes succeed and hand back what a client needs (IDs, objects, positions), so
a chat app keeps working; every read answers ``NotFound``, and the health
endpoint reports history as disabled. Updating a conversation is a read (it
must return the stored conversation), so it answers ``NotFound`` too.
"""

from __future__ import annotations

from ..errors import NotFound
from ..records import RECORD_KINDS, Page
from ..search import SearchPage
from .base import Backend


class NoneBackend(Backend):
    persistent = False

    def create_conversation(self, conversation, items):
        return _positioned(conversation.id, items)

    def get_conversation(self, owner, conversation_id):
        raise NotFound.conversation(conversation_id)

    def update_conversation(self, owner, conversation_id, metadata, updated_at, expires_at, *, replace):
        raise NotFound.conversation(conversation_id)

    def delete_conversation(self, owner, conversation_id):
        raise NotFound.conversation(conversation_id)

    def list_conversations(self, owner, *, after, limit, order, order_by="created_at"):
        return Page(data=[], has_more=False)

    def add_items(self, owner, conversation_id, items, *, updated_at, expires_at):
        return _positioned(conversation_id, items)

    def list_items(self, owner, conversation_id, *, after, limit, order):
        raise NotFound.conversation(conversation_id)

    def get_item(self, owner, conversation_id, item_id):
        raise NotFound.conversation(conversation_id)

    def delete_item(self, owner, conversation_id, item_id):
        raise NotFound.conversation(conversation_id)

    def recent_items(self, owner, conversation_id, limit):
        raise NotFound.conversation(conversation_id)

    def store_response(self, response):
        return None

    def store_turn(self, response, items, *, updated_at, expires_at):
        if response.conversation_id is None:
            return []
        return _positioned(response.conversation_id, items)

    def get_response(self, owner, response_id):
        raise NotFound.response(response_id)

    def delete_response(self, owner, response_id):
        raise NotFound.response(response_id)

    def list_responses(self, owner, *, model, conversation_id, since, after, limit):
        return Page(data=[], has_more=False)

    def submit_feedback(self, feedback):
        return feedback

    def get_feedback(self, owner, response_id):
        raise NotFound.feedback(response_id)

    def delete_feedback(self, owner, response_id):
        raise NotFound.feedback(response_id)

    def list_feedback(self, owner, *, rating, model, since, after, limit):
        return Page(data=[], has_more=False)

    def search(self, owner, query, *, conversation_id, after, limit):
        """Nothing is kept, so nothing is found (not a 501: search works, and
        answers truthfully)."""
        if conversation_id is not None:
            raise NotFound.conversation(conversation_id)
        return SearchPage(data=[], has_more=False)

    def erase_owner(self, owner):
        return dict.fromkeys(RECORD_KINDS, 0)

    def owners(self):
        return iter(())

    def purge(self, *, before, dry_run):
        return dict.fromkeys(RECORD_KINDS, 0)

    def export(self, owner, since):
        return iter(())

    def import_records(self, records):
        """Accepts and drops everything: there is nowhere to keep it."""
        return dict.fromkeys(RECORD_KINDS, 0)

    def health(self):
        return {"enabled": False}


def _positioned(conversation_id, items):
    for position, item in enumerate(items):
        item.conversation_id = conversation_id
        item.position = position
    return items
