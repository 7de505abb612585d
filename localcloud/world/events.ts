/**
 * What the world tells EventBridge: the detail types EC2 publishes for an instance (a spot
 * interruption warning, a rebalance recommendation, a state change), and the one call the world
 * makes to publish them. localcloud/events/bus.ts is the bus that routes them to queues.
 */

export const DETAIL_TYPES = {
  spotInterruption: "EC2 Spot Instance Interruption Warning",
  rebalance: "EC2 Instance Rebalance Recommendation",
  stateChange: "EC2 Instance State-change Notification",
} as const;
export type DetailType = (typeof DETAIL_TYPES)[keyof typeof DETAIL_TYPES];
export const ALL_DETAIL_TYPES: readonly DetailType[] = Object.values(DETAIL_TYPES);

/** Where the world publishes an EC2 event for one instance. */
export interface EventPublisher {
  publish(detailType: DetailType, instanceId: string, availabilityZone: string, detail: Record<string, string>): unknown;
}
