/**
 * The message box (`<form id="composer">` with `<textarea id="body">`): Enter
 * sends, Shift+Enter starts a new line; the box has the focus on entry and
 * again after each send. It can be blocked for a reason the page shows
 * (signed out, room closed), each reason under its own key so one source
 * lifting its block does not lift another's.
 */

export class Composer {
  #form;
  #input;
  #button;
  #note;
  #onSend;
  // Maps a block's key to the text that explains it, in the order they came.
  #blocks = new Map();
  #cleanups = [];

  constructor({ form, input, note = null, onSend }) {
    this.#form = form;
    this.#input = input;
    this.#button = form?.querySelector('button') ?? null;
    this.#note = note;
    this.#onSend = onSend;
    this.#listen(form, 'submit', (event) => {
      event.preventDefault();
      this.#submit();
    });
    this.#listen(input, 'keydown', (event) => {
      if (event.key !== 'Enter' || event.shiftKey || event.altKey || event.ctrlKey || event.metaKey) return;
      // An input method composing a character uses Enter to confirm it.
      if (event.isComposing || event.keyCode === 229) return;
      event.preventDefault();
      this.#submit();
    });
  }

  focus() {
    if (!this.#input.disabled) this.#input.focus?.();
  }

  get blocked() {
    return this.#blocks.size > 0;
  }

  /** Disables the box, saying why (`text`), until `unblock(key)`. */
  block(key, text) {
    this.#blocks.set(key, text);
    this.#render();
  }

  unblock(key) {
    if (this.#blocks.delete(key)) this.#render();
  }

  /** Puts `text` back in the box (a message to edit before sending again). */
  restore(text) {
    this.#input.value = text;
    this.focus();
  }

  destroy() {
    for (const cleanup of this.#cleanups.splice(0)) cleanup();
  }

  #submit() {
    if (this.blocked) return;
    const body = this.#input.value;
    if (body.trim() === '') return;
    this.#input.value = '';
    this.#onSend(body);
    this.focus();
  }

  #render() {
    const blocked = this.blocked;
    this.#input.disabled = blocked;
    if (this.#button) this.#button.disabled = blocked;
    if (this.#note) {
      const reasons = [...this.#blocks.values()];
      this.#note.textContent = reasons.at(-1) ?? '';
      this.#note.hidden = !blocked;
    }
  }

  #listen(target, type, handler) {
    if (!target) return;
    target.addEventListener(type, handler);
    this.#cleanups.push(() => target.removeEventListener(type, handler));
  }
}
