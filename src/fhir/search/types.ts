export type DatePrefix = 'eq' | 'ne' | 'gt' | 'lt' | 'ge' | 'le' | 'sa' | 'eb' | 'ap';

export interface DateFilter {
  prefix: DatePrefix;
  low: number;
  high: number;
}

export interface TokenFilter {
  /** undefined: any system; null: no system (`|code`). */
  system?: string | null;
  /** undefined: any code in the system (`system|`). */
  code?: string;
}

export type Criterion =
  | { kind: 'id'; ids: string[] }
  | { kind: 'lastUpdated'; values: DateFilter[] }
  | { kind: 'token'; param: string; not: boolean; values: TokenFilter[] }
  | { kind: 'reference'; param: string; values: { refType?: string; refId: string }[] }
  | { kind: 'date'; param: string; values: DateFilter[] }
  | { kind: 'string'; param: string; mode: 'starts' | 'exact' | 'contains'; values: string[] }
  | { kind: 'missing'; param: string; table: IndexTable; missing: boolean };

export type IndexTable = 'token' | 'reference' | 'date' | 'string';

export interface SortSpec {
  /** `_id`, `_lastUpdated`, or a search parameter of the type. */
  key: string;
  table?: IndexTable;
  descending: boolean;
}

export interface IncludeSpec {
  /** The type whose reference parameter is followed. */
  sourceType: string;
  param: string;
  targetType?: string;
}

export interface SearchRequest {
  type: string;
  criteria: Criterion[];
  count: number;
  offset: number;
  /** Paging snapshot: results are as they stood when the first page was read. */
  snapshot?: string;
  sort: SortSpec[];
  total: 'none' | 'estimate' | 'accurate';
  summaryCount: boolean;
  elements?: string[];
  include: IncludeSpec[];
  revinclude: IncludeSpec[];
  /** Parameters ignored under `Prefer: handling=lenient`. */
  ignored: string[];
  /** The query that selected these results, without paging parameters, for Bundle links. */
  canonicalQuery: [string, string][];
}
