import type { OperationDefinition } from './operation';
import { terminologyOperations } from './terminology';
import { validateOperation } from './validate';

/** Every operation the server offers; the router and the CapabilityStatement read this list. */
export const operations: OperationDefinition[] = [validateOperation, ...terminologyOperations()];
