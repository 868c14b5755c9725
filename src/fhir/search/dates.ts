/**
 * FHIR date, dateTime and instant values as half-open millisecond ranges [low, high): a value stands for the
 * whole interval its precision implies (http://hl7.org/fhir/R4/search.html#date).
 */
export interface DateRange {
  low: number;
  high: number;
}

const DATE_RE =
  /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(?:\.(\d{1,9}))?)?(Z|[+-]\d{2}:\d{2})?)?)?)?$/;

export function parseDateRange(value: string): DateRange | undefined {
  const m = DATE_RE.exec(value);
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  const year = Number(y);
  const month = mo === undefined ? undefined : Number(mo) - 1;
  const day = d === undefined ? undefined : Number(d);
  if (month !== undefined && (month < 0 || month > 11)) return undefined;
  if (day !== undefined && (day < 1 || day > daysInMonth(year, month ?? 0))) return undefined;
  if (h === undefined) {
    if (month === undefined) return { low: utc(year, 0, 1), high: utc(year + 1, 0, 1) };
    if (day === undefined) return { low: utc(year, month, 1), high: utc(year, month + 1, 1) };
    return { low: utc(year, month, day), high: utc(year, month, day + 1) };
  }
  const hour = Number(h);
  const minute = Number(mi);
  const second = s === undefined ? 0 : Number(s);
  if (hour > 24 || minute > 59 || second > 60) return undefined;
  const ms = frac === undefined ? 0 : Math.floor(Number(`0.${frac}`) * 1000);
  const offset = tz === undefined || tz === 'Z' ? 0 : tzOffsetMs(tz);
  const low = Date.UTC(year, month ?? 0, day ?? 1, hour, minute, second, ms) - offset;
  const width = frac !== undefined ? 1 : s !== undefined ? 1000 : 60_000;
  return { low, high: low + width };
}

/** A Period: an absent start or end is open-ended (http://hl7.org/fhir/R4/datatypes.html#Period). */
export function periodRange(start: string | undefined, end: string | undefined): DateRange | undefined {
  const s = start === undefined ? undefined : parseDateRange(start);
  const e = end === undefined ? undefined : parseDateRange(end);
  if ((start !== undefined && !s) || (end !== undefined && !e) || (!s && !e)) return undefined;
  return { low: s ? s.low : -Infinity, high: e ? e.high : Infinity };
}

export function toSqlTimestamp(ms: number): string {
  if (ms === Infinity) return 'infinity';
  if (ms === -Infinity) return '-infinity';
  return new Date(ms).toISOString();
}

function utc(year: number, month: number, day: number): number {
  return Date.UTC(year, month, day);
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month + 1, 0)).getUTCDate();
}

function tzOffsetMs(tz: string): number {
  const sign = tz.startsWith('-') ? -1 : 1;
  const [hh, mm] = tz.slice(1).split(':').map(Number);
  return sign * (hh * 60 + mm) * 60_000;
}
