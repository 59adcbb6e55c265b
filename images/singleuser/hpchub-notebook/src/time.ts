// How times read in the status bar and in the notifications.

/** 1:05:09 or 4:59 (seconds left, never negative). */
export function formatLeft(seconds: number): string {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const sec = s % 60;
  const pad = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}:${pad(m)}:${pad(sec)}` : `${m}:${pad(sec)}`;
}

/** "30 minutes", "1 hour 30 minutes", "45 seconds". */
export function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) {
    return `${s} second${s === 1 ? '' : 's'}`;
  }
  const h = Math.floor(s / 3600);
  const m = Math.round((s % 3600) / 60);
  const parts: string[] = [];
  if (h > 0) {
    parts.push(`${h} hour${h === 1 ? '' : 's'}`);
  }
  if (m > 0) {
    parts.push(`${m} minute${m === 1 ? '' : 's'}`);
  }
  return parts.join(' ');
}

/** The local wall-clock time `secondsFromNow` ahead, as HH:MM. */
export function clockAt(secondsFromNow: number): string {
  const d = new Date(Date.now() + secondsFromNow * 1000);
  return d.toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
}
