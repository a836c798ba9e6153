{
  {{- if not .Webhooks.people }}{{ fail "posture-connector (webhook people) sent no data" }}{{ end }}
  "subject": {
    {{- if and (hasKey .Webhooks.people "user") (hasKey .Webhooks.people.user "username") }}
    "commonName": {{ toJson .Webhooks.people.user.username }},
    {{- else if and (hasKey .Webhooks.people "device") (hasKey .Webhooks.people.device "serial") }}
    "commonName": {{ toJson .Webhooks.people.device.serial }},
    {{- end }}
    {{- if and (hasKey .Webhooks.people "device") (hasKey .Webhooks.people.device "serial") }}
    "serialNumber": {{ toJson .Webhooks.people.device.serial }},
    {{- end }}
    "organizationalUnit": {{ if hasKey .Webhooks.people "groups" }}{{ toJson .Webhooks.people.groups }}{{ else }}[]{{ end }}
  },
  {{- if and (hasKey .Webhooks.people "user") (hasKey .Webhooks.people.user "email") }}
  "sans": {{ toJson (append .SANs (dict "type" "email" "value" .Webhooks.people.user.email)) }},
  {{- else }}
  "sans": {{ toJson .SANs }},
  {{- end }}
  {{- if and (hasKey .Webhooks.people "user") (hasKey .Webhooks.people.user "department") }}
  "extensions": [
    {"id": "1.3.6.1.4.1.99999.1", "critical": false,
     "value": {{ asn1Enc (printf "utf8:%s" .Webhooks.people.user.department) | toJson }}}
  ],
  {{- end }}
  "keyUsage": ["digitalSignature"],
  "extKeyUsage": ["clientAuth"]
}
