/**
 * How the message list reads at a glance: times in the reader's zone, a day
 * separator where the day changes ("Today", "Yesterday", or the date), and
 * consecutive messages of one author within a few minutes shown under one name.
 */

/** The most time between two messages of one author shown under one name. */
export const GROUP_GAP_MS = 5 * 60 * 1000;

function parse(iso) {
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? null : date;
}

/** `HH:MM` in the reader's time zone, or '' for a date that does not parse. */
export function formatTime(iso) {
  const date = parse(iso);
  if (date === null) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${pad(date.getHours())}:${pad(date.getMinutes())}`;
}

/** The full date and time, for a `title` on hover; '' for a date that does not parse. */
export function formatFullTime(iso) {
  const date = parse(iso);
  if (date === null) return '';
  return date.toLocaleString(undefined, {
    weekday: 'long', year: 'numeric', month: 'long', day: 'numeric', hour: '2-digit', minute: '2-digit', second: '2-digit',
  });
}

/** The reader's calendar day of `iso` as `YYYY-MM-DD`, or '' for a date that does not parse. */
export function dayKey(iso) {
  const date = parse(iso);
  if (date === null) return '';
  const pad = (n) => String(n).padStart(2, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())}`;
}

/** "Today", "Yesterday", or the date (with the year when it is not this one). */
export function dayLabel(iso, now = new Date()) {
  const date = parse(iso);
  if (date === null) return '';
  const today = dayKey(now.toISOString());
  const yesterday = new Date(now.getFullYear(), now.getMonth(), now.getDate() - 1, 12);
  const key = dayKey(iso);
  if (key === today) return 'Today';
  if (key === dayKey(yesterday.toISOString())) return 'Yesterday';
  const options = { weekday: 'long', month: 'long', day: 'numeric' };
  if (date.getFullYear() !== now.getFullYear()) options.year = 'numeric';
  return date.toLocaleDateString(undefined, options);
}

/**
 * Whether `next` reads as a continuation of `prev` (both `{author, kind, sentAt}`):
 * the same author and kind, not an announcement, the same day, within GROUP_GAP_MS.
 */
export function continues(prev, next) {
  if (!prev || !next) return false;
  if (!prev.author || prev.author !== next.author || prev.kind !== next.kind) return false;
  if (prev.kind === 'system' || next.kind === 'system') return false;
  const a = parse(prev.sentAt);
  const b = parse(next.sentAt);
  if (a === null || b === null || dayKey(prev.sentAt) !== dayKey(next.sentAt)) return false;
  const gap = b.getTime() - a.getTime();
  return gap >= 0 && gap <= GROUP_GAP_MS;
}
