// `require('motia-state')` inside a step run by motia-state: the runtime puts
// this folder's parent on NODE_PATH; the binding itself is ../../node.
module.exports = require("../../node/index.js");
