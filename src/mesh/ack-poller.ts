import type { Acknowledgement } from '../delivery/adapter';
import { MeshClient, MeshError } from './client';
import { ITK, parseItkResponse } from './itk3';

/**
 * Watches a MESH inbox for the ITK3 responses (ITK008M, on `<workflow>_ACK`) and MESH non-delivery REPORTs
 * that answer the messages an adapter sent on `workflowId`, and reports each as an Acknowledgement. Shared by
 * the GP Connect Send Document and Update Record adapters.
 */
export class ItkAckPoller {
  /** MESH message id -> correlation id, to match MESH non-delivery REPORTs (in memory: lost on restart). */
  readonly sent = new Map<string, string>();
  /** For operators and tests: what the acknowledgement loop has been doing. */
  readonly stats = { polls: 0, reported: 0, unmatchedReports: 0, lastPollAt: undefined as Date | undefined, lastError: undefined as string | undefined };
  private loop?: Promise<void>;
  private abort?: AbortController;
  private wake?: () => void;

  constructor(
    private readonly client: MeshClient,
    private readonly workflowId: string,
    private readonly ackWorkflowId: string,
    private readonly deliveredOn: 'business' | 'infrastructure',
    private readonly pollIntervalMs: number,
    private readonly now: () => Date,
  ) {}

  /** Remembers which correlation id a MESH message carries (bounded: the oldest are forgotten first). */
  remember(meshMessageId: string, correlationId: string): void {
    this.sent.set(meshMessageId, correlationId);
    if (this.sent.size > 100_000) this.sent.delete(this.sent.keys().next().value as string);
  }

  async start(onAcknowledgement: (ack: Acknowledgement) => Promise<void>): Promise<void> {
    if (this.loop) return;
    try {
      await this.client.handshake();
    } catch (err) {
      // A wrong password or key will not mend itself: refuse to start. Network trouble: keep polling.
      if (err instanceof MeshError && (err.status === 401 || err.status === 403)) throw err;
    }
    const abort = new AbortController();
    this.abort = abort;
    this.loop = (async () => {
      while (!abort.signal.aborted) {
        try {
          await this.pollOnce(onAcknowledgement, abort.signal);
        } catch (err) {
          this.stats.lastError = (err as Error).message; // the next poll tries again
        }
        if (abort.signal.aborted) break;
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, this.pollIntervalMs);
          this.wake = () => {
            clearTimeout(t);
            resolve();
          };
        });
      }
    })();
  }

  async stop(): Promise<void> {
    this.abort?.abort();
    this.wake?.();
    await this.loop?.catch(() => undefined);
    this.loop = undefined;
  }

  /**
   * One inbox pass: every ITK3 response (`<workflow>_ACK`) and MESH REPORT about our workflow is turned into
   * an acknowledgement (or ignored when it is the one `deliveredOn` does not report) and then acknowledged in
   * MESH. A message is left in the inbox when reporting it fails, and tried again next pass.
   */
  async pollOnce(onAcknowledgement: (ack: Acknowledgement) => Promise<void>, signal?: AbortSignal): Promise<number> {
    let reported = 0;
    this.stats.polls++;
    this.stats.lastPollAt = this.now();
    const ids = await this.client.listInbox({ workflowFilter: `${this.workflowId}*`, signal });
    for (const id of ids) {
      if (signal?.aborted) break;
      try {
        const msg = await this.client.download(id, signal);
        const ack = this.toAcknowledgement(msg.mex, msg.body);
        if (ack === 'not-ours') continue;
        if (ack) {
          await onAcknowledgement(ack);
          reported++;
          this.stats.reported++;
        }
        await this.client.acknowledge(id, signal);
      } catch (err) {
        this.stats.lastError = (err as Error).message; // leave it for the next pass
      }
    }
    return reported;
  }

  private toAcknowledgement(mex: Record<string, string>, body: Buffer): Acknowledgement | undefined | 'not-ours' {
    if ((mex.messagetype ?? '').toUpperCase() === 'REPORT') {
      if (mex.workflowid !== this.workflowId) return 'not-ours';
      const correlationId = this.sent.get(mex.linkedmsgid ?? '');
      if (!correlationId) {
        this.stats.unmatchedReports++; // sent before a restart: nothing to match it to
        return undefined;
      }
      const summary = `MESH could not deliver message ${mex.linkedmsgid}: ${mex.statuscode ?? ''} ${mex.statusdescription ?? ''}`.trim();
      return {
        correlationId,
        result: 'failed',
        summary,
        outcome: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'transient', diagnostics: summary }] },
      };
    }
    if (mex.workflowid !== this.ackWorkflowId) return 'not-ours';
    let response;
    try {
      response = parseItkResponse(JSON.parse(body.toString('utf8')));
    } catch {
      response = undefined;
    }
    if (!response) return undefined; // not an ITK response: nothing to correlate
    const label = `ITK3 ${response.kind} acknowledgement ${response.code}${response.display ? ` ${response.display}` : ''}`;
    if (!response.success) {
      return {
        correlationId: response.responseTo,
        result: 'failed',
        summary: `${label}${response.diagnostics ? `: ${response.diagnostics}` : ''}`,
        outcome: {
          resourceType: 'OperationOutcome',
          issue: [
            {
              severity: 'error',
              code: response.kind === 'business' ? 'business-rule' : 'processing',
              details: { coding: [{ system: ITK.responseCodeSystem, code: response.code, display: response.display }] },
              diagnostics: response.diagnostics ?? label,
            },
          ],
        },
      };
    }
    if (response.kind !== this.deliveredOn) return undefined;
    return { correlationId: response.responseTo, result: 'delivered', summary: label };
  }
}
