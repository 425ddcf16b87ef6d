/**
 * Who is in one room ("who is here"): the list a `subscribed` frame brings,
 * kept current by the `presence` frames that follow.
 */

// Member lists are shown sorted by name as a reader expects (case and accents
// second), then by exact name and id so the order is total.
const NAME_ORDER = new Intl.Collator(undefined, { sensitivity: 'base' });

function compareCodeUnits(a, b) {
  if (a < b) return -1;
  return a > b ? 1 : 0;
}

function compareMembers(a, b) {
  return NAME_ORDER.compare(a.name, b.name) || compareCodeUnits(a.name, b.name) || compareCodeUnits(a.id, b.id);
}

/** `{id, name}` from a frame, or null when it has no usable id; `name` is null when absent. */
function wireMember(raw) {
  if (raw === null || typeof raw !== 'object') return null;
  if (typeof raw.id !== 'string' || raw.id === '') return null;
  return { id: raw.id, name: typeof raw.name === 'string' ? raw.name : null };
}

function wireList(value) {
  return Array.isArray(value) ? value : [];
}

/**
 * Who is in one room, keyed by member id.
 *
 * The server's set holds (id, name) pairs, so for a few seconds after a guest
 * renames and reloads, one id can be there under both names, and the leave of
 * the old name must not remove the person. Each id therefore keeps the names
 * it is present under; the newest one is shown.
 */
export class RoomMembers {
  // Maps member id to its names, oldest first; never holds an empty list.
  #names = new Map();

  constructor(list = []) {
    for (const raw of wireList(list)) {
      const member = wireMember(raw);
      if (member) this.#add(member);
    }
  }

  /** The member with `id` as shown, or null. */
  get(id) {
    const names = this.#names.get(id);
    return names ? { id, name: names.at(-1) } : null;
  }

  /** Every member as `{id, name}`, sorted by name then id. */
  list() {
    return Array.from(this.#names.keys(), (id) => this.get(id)).sort(compareMembers);
  }

  /**
   * Applies a `presence` frame's leaves, then its joins. Returns `{changed,
   * joins, leaves}`: who is newly listed, who is no longer listed (sorted), and
   * whether anything shown changed (a new name for a listed id counts).
   */
  apply(joins, leaves) {
    // Maps each id the frame names to how it was shown before.
    const before = new Map();
    const remember = (id) => {
      if (!before.has(id)) before.set(id, this.get(id));
    };
    for (const raw of wireList(leaves)) {
      const member = wireMember(raw);
      if (!member) continue;
      remember(member.id);
      this.#remove(member);
    }
    for (const raw of wireList(joins)) {
      const member = wireMember(raw);
      if (!member) continue;
      remember(member.id);
      this.#add(member);
    }
    const joined = [];
    const left = [];
    let renamed = false;
    for (const [id, was] of before) {
      const now = this.get(id);
      if (was === null && now !== null) joined.push(now);
      else if (was !== null && now === null) left.push(was);
      else if (was !== null && was.name !== now.name) renamed = true;
    }
    return {
      changed: renamed || joined.length > 0 || left.length > 0,
      joins: joined.sort(compareMembers),
      leaves: left.sort(compareMembers),
    };
  }

  /** A join without a name lists an unknown id under '' and leaves a known one as it is. */
  #add({ id, name }) {
    const names = this.#names.get(id) ?? [];
    if (name === null) {
      if (names.length === 0) this.#names.set(id, ['']);
      return;
    }
    this.#names.set(id, [...names.filter((known) => known !== name), name]);
  }

  /** A leave without a name removes the id under every name. */
  #remove({ id, name }) {
    const names = this.#names.get(id);
    if (!names) return;
    const rest = name === null ? [] : names.filter((known) => known !== name);
    if (rest.length === 0) this.#names.delete(id);
    else this.#names.set(id, rest);
  }
}
