'use strict'
// motia-state for Node steps: the state client, its errors, the runner.
module.exports = {
  ...require('./lib/errors'),
  ...require('./lib/rpc'),
  ...require('./lib/state'),
  ...require('./lib/runner'),
}
