/** The API's shapes as the console uses them (shared/api.ts is the source of truth). */
export type {
  EventsResponse,
  InstanceDetail,
  InstanceSummary,
  InventoryView,
  Savings,
  Timeline,
  Workflow,
  WorkflowStep,
} from "../shared/api.js";
export type { InstanceAction, InstanceState } from "../shared/operations.js";
