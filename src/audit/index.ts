export {
  AUDIT_EVENT_TYPE,
  CLIENT_ID_SYSTEM,
  DESTINATION_ID_SYSTEM,
  buildAuditEvent,
  outcomeCode,
  type AuditAction,
  type AuditEntity,
  type AuditInteraction,
  type AuditRecord,
} from './events';
export { describeDelivery, describeExchange, type ExchangeDescription } from './describe';
export { AuditLog, DEFAULT_AUDIT_COUNT, MAX_AUDIT_COUNT, type AuditLogLogger, type AuditLogOptions } from './log';
