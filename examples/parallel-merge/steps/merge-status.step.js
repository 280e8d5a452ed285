// GET /parallel-merge/:run: the merged result, or 404 while the run is going.
exports.config = {
  name: 'ParallelMergeStatus',
  flows: ['parallel-merge'],
  triggers: [{ type: 'api', method: 'GET', path: '/parallel-merge/:run' }],
}

exports.handler = async (req, ctx) => {
  const merged = await ctx.state.get('merges', req.pathParams.run)
  if (merged === null) return { status: 404, body: { run: req.pathParams.run, status: 'running' } }
  return { status: 200, body: { run: req.pathParams.run, status: 'merged', ...merged } }
}
