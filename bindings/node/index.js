'use strict'
// motia-state for Node steps: the state client, its errors, the runner's entry points.
const { loadStep, main } = require('./lib/runner')

module.exports = {
  ...require('./lib/errors'),
  ...require('./lib/rpc'),
  ...require('./lib/state'),
  loadStep,
  main,
}
