'use strict'
// motia-state for Node steps: the state client, its errors, the runner's entry points.
const { loadStep, main } = require('./lib/runner')

module.exports = {
  ...require('./lib/errors'),
  ...require('./lib/rpc'),
  ...require('./lib/state'),
  loadStep,
  main,
  /** The release, from package.json (the same string as the Python package's). */
  VERSION: require('./package.json').version,
}
