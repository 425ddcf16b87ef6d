/**
 * What moderators do to an open room page, said in words: the room closed
 * (with the moderator's reason), reopened (the box works again, the messages
 * flow; RippleSocket subscribed again on `room_reopened`), or this person
 * removed (4403: no reconnect, and none would be let in while the removal
 * lasts).
 *
 * The reason shows in the composer's note (a `role="alert"` element) as the
 * box's block. The status line must not stay a green "Connected" in a closed
 * room: after every state change (the status line paints first) it is set to
 * say so. Text goes in through `textContent` only.
 */

import { CLOSE, STATE } from '../ripple-socket.js';
import { describeState } from './status.js';

/** The composer's block key for moderation. */
const BLOCK = 'moderation';

export const TEXT = Object.freeze({
  closed: 'This room was closed by a moderator.',
  closedStatus: 'Room closed',
  removed: 'A moderator removed you from this chat.',
  removedStatus: 'Removed by a moderator',
});

/** The closed room's notice for the moderator's `reason` ('' or absent: none given). */
export function closedText(reason) {
  const words = typeof reason === 'string' ? reason.trim() : '';
  return words ? `This room was closed by a moderator: ${words}` : TEXT.closed;
}

/**
 * Mounts moderation for `room` and returns its `destroy()`. `composer` is the
 * page's Composer (block/unblock); `line` and `button` the status line and its
 * retry button; `historyNote` the page's note that the closed room also uses.
 */
export function mountModeration({
  socket, room, composer, line = null, button = null, historyNote = null,
  defer = (fn) => globalThis.queueMicrotask(fn),
}) {
  let closed = false;
  let removed = false;
  const cleanups = [];

  function listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    cleanups.push(() => target.removeEventListener(type, handler));
  }

  /** Paints the status line over the connection's own words, when moderation has the say. */
  function paintStatus() {
    if (!line) return;
    let text = null;
    if (removed) text = TEXT.removedStatus;
    else if (closed && socket.state === STATE.OPEN) text = TEXT.closedStatus;
    if (text === null) return;
    line.dataset.state = 'closed';
    line.dataset.moderation = removed ? 'removed' : 'closed';
    line.textContent = text;
    if (button) button.hidden = true;
  }

  listen(socket, 'unsubscribed', (event) => {
    const { room: where, reason, message } = event.detail;
    if (where !== room || reason !== 'room_closed') return;
    closed = true;
    composer?.block(BLOCK, closedText(message));
    defer(paintStatus);
  });
  listen(socket, 'reopened', (event) => {
    if (event.detail.room !== room) return;
    closed = false;
    composer?.unblock(BLOCK);
    composer?.unblock('room');
    if (historyNote) historyNote.hidden = true;
    if (line && !removed) {
      // The status line's own words again ("Connected").
      const view = describeState(socket.stateDetail);
      delete line.dataset.moderation;
      line.dataset.state = view.dataState;
      line.textContent = view.text;
    }
  });
  listen(socket, 'statechange', (event) => {
    const { state, code } = event.detail;
    if (code === CLOSE.DISCONNECTED_BY_MODERATOR && (state === STATE.CLOSED || state === STATE.FAILED)) {
      removed = true;
      composer?.block(BLOCK, TEXT.removed);
    }
    // After the status line's own listener, whichever was added first.
    defer(paintStatus);
  });

  return function destroy() {
    for (const cleanup of cleanups.splice(0)) cleanup();
  };
}
