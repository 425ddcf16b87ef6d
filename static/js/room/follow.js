/**
 * Keeps the newest message in view: the message list follows new messages
 * while the reader is at its bottom; once they scroll up it stays put and a
 * "N new messages" button (which jumps down) counts what arrived meanwhile.
 * While the tab is hidden, the tab title counts unread messages: "(3) General – Ripple".
 */

// How close to the bottom (px) still counts as "at the bottom".
const BOTTOM_SLACK_PX = 48;

export class Follow {
  #scroller;
  #hint;
  #document;
  #baseTitle;
  #following = true;
  #unseen = 0;
  #unread = 0;
  #cleanups = [];

  constructor({ scroller, hint, document, window = null }) {
    this.#scroller = scroller;
    this.#hint = hint;
    this.#document = document;
    this.#baseTitle = String(document.title ?? '').replace(/^\(\d+\) /, '');
    this.#listen(scroller, 'scroll', () => this.#onScroll());
    this.#listen(hint, 'click', () => this.jump());
    this.#listen(document, 'visibilitychange', () => {
      if (!this.#hidden()) this.#setUnread(0);
    });
    // A resize, or the fonts arriving after the first layout (load), moves the bottom.
    for (const type of ['resize', 'load']) {
      this.#listen(window, type, () => {
        if (this.#following) this.#toBottom();
      });
    }
    // The list's box shrinks when the message box grows a line: keep the newest in view.
    const Observer = window?.ResizeObserver;
    if (typeof Observer === 'function') {
      const observer = new Observer(() => {
        if (this.#following) this.#toBottom();
      });
      observer.observe(scroller);
      this.#cleanups.push(() => observer.disconnect());
    }
  }

  /** True while the list follows new messages. */
  get following() {
    return this.#following;
  }

  /** Messages that arrived below the fold since the reader scrolled up. */
  get unseen() {
    return this.#unseen;
  }

  /** Opens the list at the newest message. */
  start() {
    this.#following = true;
    this.#toBottom();
  }

  /** `count` messages from others arrived. */
  incoming(count = 1) {
    if (count <= 0) return;
    if (this.#hidden()) this.#setUnread(this.#unread + count);
    if (this.#following) {
      this.#toBottom();
    } else {
      this.#unseen += count;
      this.#showHint();
    }
  }

  /** The list changed in place (a confirmation, a regroup): stay at the bottom if there. */
  changed() {
    if (this.#following) this.#toBottom();
  }

  /** The reader sent a message: bring them to it. */
  jump() {
    this.#following = true;
    this.#toBottom();
    this.#clearHint();
  }

  destroy() {
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
    this.#setUnread(0);
  }

  #listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    this.#cleanups.push(() => target.removeEventListener(type, handler));
  }

  #hidden() {
    return this.#document.visibilityState === 'hidden';
  }

  #atBottom() {
    const { scrollHeight, scrollTop, clientHeight } = this.#scroller;
    const gap = scrollHeight - scrollTop - clientHeight;
    // A scroller with no layout (NaN) counts as at the bottom.
    return !(gap > BOTTOM_SLACK_PX);
  }

  #onScroll() {
    this.#following = this.#atBottom();
    if (this.#following) this.#clearHint();
  }

  #toBottom() {
    this.#scroller.scrollTop = this.#scroller.scrollHeight ?? 0;
  }

  #showHint() {
    if (!this.#hint) return;
    this.#hint.textContent = `${this.#unseen} new message${this.#unseen === 1 ? '' : 's'} ↓`;
    this.#hint.hidden = false;
  }

  #clearHint() {
    this.#unseen = 0;
    if (this.#hint) this.#hint.hidden = true;
  }

  #setUnread(count) {
    this.#unread = count;
    this.#document.title = count > 0 ? `(${count}) ${this.#baseTitle}` : this.#baseTitle;
  }
}
