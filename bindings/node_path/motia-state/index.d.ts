export * from "../../node/index";
