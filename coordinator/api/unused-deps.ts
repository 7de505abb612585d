/**
 * Complete CoordinatorViews and GroupApi for tests that exercise only part of the API: the members
 * a test gives are used, every other one throws "not used by this test" when called (answered 500),
 * so a test that reaches a member it did not expect to fails loudly instead of passing on a stub.
 * Nothing in the product imports this.
 */
import type { CoordinatorViews, GroupApi } from "./types.js";

function unused(what: string): () => never {
  return () => {
    throw new Error(`${what}: not used by this test`);
  };
}

export function unusedViews(given: Partial<CoordinatorViews> = {}): CoordinatorViews {
  return {
    listInstances: unused("views.listInstances"),
    getInstance: unused("views.getInstance"),
    getEvents: unused("views.getEvents"),
    getWorkflow: unused("views.getWorkflow"),
    createInstance: unused("views.createInstance"),
    checkCreate: unused("views.checkCreate"),
    runOperation: unused("views.runOperation"),
    updateInstance: unused("views.updateInstance"),
    importInstance: unused("views.importInstance"),
    relocateInstance: unused("views.relocateInstance"),
    deleteInstance: unused("views.deleteInstance"),
    savings: unused("views.savings"),
    ...given,
  };
}

export function unusedGroups(given: Partial<GroupApi> = {}): GroupApi {
  return {
    list: unused("groups.list"),
    describe: unused("groups.describe"),
    create: unused("groups.create"),
    update: unused("groups.update"),
    scale: unused("groups.scale"),
    delete: unused("groups.delete"),
    events: unused("groups.events"),
    ...given,
  };
}
