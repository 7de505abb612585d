import { operationCommand } from "../operation.js";

export const command = operationCommand("recycle");
