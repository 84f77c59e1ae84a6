"""The chatroom socket: ``/ws/conversations/<id>/``, the owner's live view of one conversation.

Out: everything the turn recorders broadcast to ``conversation.<id>`` (text deltas, HTML fragments), snapshots
on request, and ``error`` frames. In: ``frames.InboundFrame`` (prompts, cancels, resyncs and the actions on a
finished turn, each through its service, which checks the owner). Strangers and anonymous visitors are closed
with a 4xxx code before any data is sent.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncWebsocketConsumer
from django.conf import settings

from apps.chat import rendering, selectors, services
from apps.chat.frames import (
    CancelFrame,
    EditFrame,
    FrameError,
    RegenerateFrame,
    ResyncFrame,
    RetryFrame,
    SendFrame,
    VersionFrame,
    frame_parse,
)
from apps.chat.models import Conversation, Turn
from apps.chat.recorder import conversation_group
from apps.chat.services import ChatError
from apps.panels.models import Panel
from apps.panels.selectors import panel_get_for

logger = logging.getLogger(__name__)

CLOSE_UNAUTHENTICATED = 4401
CLOSE_NOT_FOUND = 4404


class ConversationConsumer(AsyncWebsocketConsumer):
    """Channels' ``AsyncWebsocketConsumer``: socket frames reach ``receive``, channel-layer messages reach
    the handler named after their type (``chat.frame`` -> ``chat_frame``) through Channels' own dispatch."""

    conversation: Conversation
    group = ""

    async def connect(self) -> None:
        self._pending: dict[int, asyncio.Task[None]] = {}
        self._inbound_tasks: set[asyncio.Task[None]] = set()
        # asyncio's lock wakes its waiters in the order they came: frames are handled in arrival order.
        self._inbound_lock = asyncio.Lock()
        user = self.scope.get("user")
        conversation_id = int(self.scope["url_route"]["kwargs"]["conversation_id"])
        # Accept, then close with a code the page can tell apart (a refused handshake only says 1006).
        await self.accept()
        if user is None or not user.is_authenticated:
            await self.close(code=CLOSE_UNAUTHENTICATED)
            return
        conversation = await _conversation_for(user, conversation_id)
        if conversation is None:
            await self.close(code=CLOSE_NOT_FOUND)
            return
        self.conversation = conversation
        self.group = conversation_group(conversation.pk)
        await self.channel_layer.group_add(self.group, self.channel_name)
        running = await database_sync_to_async(selectors.running_turn_ids)(conversation_id=conversation.pk)
        await self.send(text_data=rendering.frame({"type": "hello", "running": running}))

    async def disconnect(self, code: int) -> None:
        # A frame still being handled is finished, as it was when handled inline (a prompt taken in is a
        # turn, its run the server's); only the snapshot fallbacks stop.
        for task in getattr(self, "_pending", {}).values():
            task.cancel()
        if self.group:
            await self.channel_layer.group_discard(self.group, self.channel_name)

    async def receive(self, text_data: str | None = None, bytes_data: bytes | None = None) -> None:
        """Handle the frame in a task of its own, frames of this socket one after another in their order.

        Channels hands a consumer one message at a time, and starting a run waits on the database thread,
        behind every other socket's start when prompts come in a burst (30 at once: up to half a second).
        Handled inline, that wait held back the relay of this socket's frames, its own run's first words
        among them; in a task, the frames flow while the prompt is taken in.
        """
        if not self.group:
            return
        task = asyncio.create_task(self._handle(text_data), name=f"conversation-{self.conversation.pk}-in")
        self._inbound_tasks.add(task)
        task.add_done_callback(self._inbound_tasks.discard)

    async def _handle(self, text_data: str | None) -> None:
        async with self._inbound_lock:
            try:
                frame = frame_parse(text_data)
                if isinstance(frame, SendFrame):
                    await self._send_prompt(frame)
                elif isinstance(frame, CancelFrame):
                    await self._cancel(frame)
                elif isinstance(frame, ResyncFrame):
                    await self._resync(frame.turn)
                else:
                    await self._turn_act(frame)
            except (FrameError, ChatError) as error:
                await self._error(str(error))
            except Exception:
                logger.exception("conversation %s: handling a frame failed", self.conversation.pk)
                await self._error("Something went wrong on the server; try again.")

    # --- inbound -----------------------------------------------------------------------------------------

    async def _send_prompt(self, frame: SendFrame) -> None:
        user = self.scope["user"]
        panel = await _panel_for(user, frame.panel)
        if panel is None:
            raise ChatError("That panel does not exist (or is not yours). Pick another one.")
        try:
            await services.turn_start(
                user=user,
                conversation=self.conversation,
                prompt=frame.prompt,
                panel=panel,
                channel_layer_alias=self.channel_layer_alias,
            )
        except Conversation.DoesNotExist:
            raise ChatError("This conversation no longer exists.") from None

    async def _cancel(self, frame: CancelFrame) -> None:
        try:
            turn = await services.turn_cancel(
                user=self.scope["user"], turn_id=frame.turn, channel_layer_alias=self.channel_layer_alias
            )
        except Turn.DoesNotExist:
            raise ChatError("There is no such turn to cancel.") from None
        if turn.status != Turn.Status.RUNNING:
            await self._send_db_snapshot(turn.pk)

    async def _turn_act(self, frame: RegenerateFrame | EditFrame | RetryFrame | VersionFrame) -> None:
        """An action on a finished turn. A run it starts shows itself (its recorder's snapshot replaces the
        turn on every page of the conversation); a version switch is broadcast here, for the same reason."""
        where = {
            "user": self.scope["user"],
            "conversation_id": self.conversation.pk,
            "turn_id": frame.turn,
        }
        layer = {"channel_layer_alias": self.channel_layer_alias}
        try:
            if isinstance(frame, RegenerateFrame):
                await services.turn_regenerate(**where, **layer)
            elif isinstance(frame, EditFrame):
                await services.turn_edit(**where, prompt=frame.prompt, **layer)
            elif isinstance(frame, RetryFrame):
                await services.turn_retry_failed(**where, **layer)
            else:
                shown = await services.turn_version_show(**where, version=frame.version)
                text = await _db_snapshot(self.conversation.pk, shown.pk)
                if text is not None:
                    await self.channel_layer.group_send(self.group, {"type": "chat.frame", "text": text})
        except Turn.DoesNotExist:
            raise ChatError("There is no such turn in this conversation.") from None

    async def _resync(self, turn_id: int) -> None:
        turn = await _turn_in(self.conversation.pk, turn_id)
        if turn is None:
            raise ChatError("There is no such turn in this conversation.")
        if turn.status == Turn.Status.RUNNING and turn.recorder_channel:
            # The recorder answers on our channel, in order with the deltas that follow. If it is gone
            # (the run just ended, or its process died) the database answers instead.
            if turn_id not in self._pending:
                self._pending[turn_id] = asyncio.create_task(self._snapshot_fallback(turn_id))
            await self.channel_layer.send(
                turn.recorder_channel,
                {"type": "run.snapshot", "reply_channel": self.channel_name, "turn": turn_id},
            )
        else:
            await self._send_db_snapshot(turn_id)

    async def _snapshot_fallback(self, turn_id: int) -> None:
        await asyncio.sleep(float(getattr(settings, "CHAT_SNAPSHOT_TIMEOUT_SECONDS", 3.0)))
        if self._pending.pop(turn_id, None) is not None:
            await database_sync_to_async(services.turns_reap_stale)(conversation_id=self.conversation.pk)
            await self._send_db_snapshot(turn_id)

    async def _send_db_snapshot(self, turn_id: int) -> None:
        text = await _db_snapshot(self.conversation.pk, turn_id)
        if text is not None:
            await self.send(text_data=text)

    async def _error(self, message: str) -> None:
        await self.send(text_data=rendering.error_frame(message))

    # --- from the channel layer -------------------------------------------------------------------------

    async def dispatch(self, message: dict[str, Any]) -> None:
        """Channels' dispatch, except for relayed frames and frames from the page, which go straight to their
        handlers.

        Before every handler Channels closes stale database connections (since Channels 4.2): a hop to the
        one thread that runs the ORM for every socket of the process. Relaying a frame the recorder already
        built touches no database, and there are dozens a second per socket: with a few hundred sockets that
        hop, not the relay, sets the delay (bench/relay.py prices it). Every other message (connect,
        disconnect, snapshots) still goes through Channels' dispatch and its clean-up.
        """
        kind = message.get("type")
        if kind == "chat.frame":
            await self.chat_frame(message)
        elif kind == "websocket.receive":
            # The same hop would hold a frame from the page behind every other socket's work on that thread
            # (a burst of prompts), and this socket's frames with it. ``receive`` hands the frame to a task
            # whose database work goes through ``database_sync_to_async``, which closes stale connections
            # itself.
            await self.websocket_receive(message)
        else:
            await super().dispatch(message)

    async def chat_frame(self, event: dict[str, Any]) -> None:
        """``{"type": "chat.frame", "text": ...}``: one frame, as it is, for the browser."""
        await self.send(text_data=event["text"])

    async def chat_snapshot(self, event: dict[str, Any]) -> None:
        """A recorder's answer to our ``run.snapshot``: the turn as it is now, so the database need not."""
        task = self._pending.pop(int(event["turn"]), None)
        if task is not None:
            task.cancel()
        await self.send(text_data=event["text"])


@database_sync_to_async
def _conversation_for(user: Any, conversation_id: int) -> Conversation | None:
    try:
        conversation = selectors.conversation_get_for(user=user, conversation_id=conversation_id)
    except Conversation.DoesNotExist:
        return None
    services.turns_reap_stale(conversation_id=conversation.pk)
    return conversation


@database_sync_to_async
def _panel_for(user: Any, panel_id: int) -> Panel | None:
    try:
        return panel_get_for(user=user, panel_id=panel_id)
    except Panel.DoesNotExist:
        return None


@database_sync_to_async
def _turn_in(conversation_id: int, turn_id: int) -> Turn | None:
    return Turn.objects.filter(pk=turn_id, conversation_id=conversation_id).first()


@database_sync_to_async
def _db_snapshot(conversation_id: int, turn_id: int) -> str | None:
    if not Turn.objects.filter(pk=turn_id, conversation_id=conversation_id).exists():
        return None
    return rendering.snapshot_frame(selectors.turn_state_for(turn_id=turn_id))
