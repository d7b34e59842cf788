#!/bin/sh
# As the official nginx image's 20-envsubst-on-templates.sh: each /etc/nginx/templates/X.template
# becomes /etc/nginx/conf.d/X, with only the environment's variables substituted.
set -eu
template_dir=${NGINX_ENVSUBST_TEMPLATE_DIR:-/etc/nginx/templates}
output_dir=${NGINX_ENVSUBST_OUTPUT_DIR:-/etc/nginx/conf.d}
defined_envs=$(printf '${%s} ' $(env | cut -d= -f1))
for template in "$template_dir"/*.template; do
  [ -f "$template" ] || continue
  output="$output_dir/$(basename "$template" .template)"
  envsubst "$defined_envs" < "$template" > "$output"
  echo "rendered $template -> $output"
done
nginx -t -q
exec "$@"
